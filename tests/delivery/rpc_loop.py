"""Zero-downtime check for `make test-upgrade`: RPCs through the Service while Helm rolls the pods.

Two halves in one file, so the pod runs exactly the code the repository holds:

``rollout`` (on the host) puts this file in a ConfigMap, starts a pod from the
application image that runs ``loop`` against the release's Service, forces a
rolling update with ``helm upgrade --reuse-values`` (a new pod-template
annotation), tells the loop to stop once the rollout is done and fails unless
the loop saw no failed call.

``loop`` (in the pod) calls ListDeployments over one long-lived mTLS channel,
as a real client would: each replica's GOAWAY during its drain makes the
channel reconnect through the Service to a pod that is still serving. Any
non-OK status counts as a failure.

Only the standard library on the host side; grpc and the generated stubs on
the pod side (the application image has both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

POD = "scalekeeper-rpc-loop"
CERT_DIR = "/etc/scalekeeper/client"
STOP_FILE = "/tmp/stop"  # created by `rollout` through `kubectl exec ... python`
CALL_TIMEOUT_SECONDS = 5.0
MAX_LOOP_SECONDS = 900.0


def loop(args: argparse.Namespace) -> int:
    import grpc

    from scalekeeper.v1 import replicas_pb2, replicas_pb2_grpc

    def read(name: str) -> bytes:
        return (Path(CERT_DIR) / name).read_bytes()

    creds = grpc.ssl_channel_credentials(read("ca.crt"), read("tls.key"), read("tls.crt"))
    options = [("grpc.ssl_target_name_override", args.server_name)]
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    with grpc.secure_channel(args.target, creds, options) as channel:
        stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
        while not Path(STOP_FILE).exists() and time.monotonic() - started < MAX_LOOP_SECONDS:
            try:
                stub.ListDeployments(
                    replicas_pb2.ListDeploymentsRequest(page_size=1),
                    timeout=CALL_TIMEOUT_SECONDS,
                    # Calls made while the channel reconnects wait for it
                    # (within the deadline) instead of failing at once.
                    wait_for_ready=True,
                )
                outcomes["OK"] += 1
            except grpc.RpcError as error:
                outcomes[error.code().name] += 1
                print(f"call failed: {error.code().name}: {error.details()}", flush=True)
            time.sleep(args.interval)
    failed = sum(count for code, count in outcomes.items() if code != "OK")
    print(json.dumps({"calls": sum(outcomes.values()), "failed": failed, "outcomes": outcomes}), flush=True)
    return 0 if failed == 0 and outcomes["OK"] > 0 else 1


def pod_manifest(args: argparse.Namespace) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": args.namespace, "labels": {"app.kubernetes.io/name": POD}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "loop",
                    "image": args.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python",
                        "/opt/rpc-loop/rpc_loop.py",
                        "loop",
                        f"--target={args.release}.{args.namespace}.svc:8443",
                        f"--server-name={args.server_name}",
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "script", "mountPath": "/opt/rpc-loop", "readOnly": True},
                        {"name": "client-tls", "mountPath": CERT_DIR, "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "script", "configMap": {"name": POD}},
                {"name": "client-tls", "secret": {"secretName": args.client_secret}},
            ],
        },
    }


def rollout(args: argparse.Namespace) -> int:
    kubectl = [args.kubectl, "--context", args.context, "--namespace", args.namespace]

    def run(*command: str, stdin: str | None = None) -> str:
        print("+", " ".join(command), flush=True)
        return subprocess.run(command, input=stdin, text=True, check=True, capture_output=True).stdout

    configmap = run(
        *kubectl, "create", "configmap", POD, f"--from-file=rpc_loop.py={__file__}", "--dry-run=client", "-o=json"
    )
    run(*kubectl, "apply", "-f", "-", stdin=configmap)
    run(*kubectl, "delete", "pod", POD, "--ignore-not-found", "--wait")
    run(*kubectl, "apply", "-f", "-", stdin=json.dumps(pod_manifest(args)))
    run(*kubectl, "wait", "--for=condition=Ready", f"pod/{POD}", "--timeout=120s")
    try:
        run(
            args.helm, "upgrade", args.release, args.chart,
            "--kube-context", args.context, "--namespace", args.namespace,
            "--reuse-values", "--set-string", f"podAnnotations.scalekeeper\\.dev/rollout={time.time_ns()}",
            "--wait", "--atomic", "--timeout", "10m",
        )  # fmt: skip
    finally:
        run(*kubectl, "exec", POD, "--", "python", "-c", f"open({STOP_FILE!r}, 'w').close()")
    deadline = time.monotonic() + 60
    phase = ""
    while time.monotonic() < deadline:
        phase = run(*kubectl, "get", "pod", POD, "-o", "jsonpath={.status.phase}").strip()
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    print(run(*kubectl, "logs", POD), flush=True)
    if phase != "Succeeded":
        print(f"rolling upgrade saw failed calls (pod phase {phase or 'unknown'})", file=sys.stderr)
        return 1
    print("rolling upgrade: zero failed calls")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_loop = sub.add_parser("loop", help="(in the pod) call the API until told to stop")
    run_loop.add_argument("--target", required=True)
    run_loop.add_argument("--server-name", required=True)
    run_loop.add_argument("--interval", type=float, default=0.05)
    roll = sub.add_parser("rollout", help="(on the host) run the loop while helm upgrade rolls the pods")
    roll.add_argument("--kubectl", default="kubectl")
    roll.add_argument("--helm", default="helm")
    roll.add_argument("--context", required=True)
    roll.add_argument("--namespace", required=True)
    roll.add_argument("--release", required=True)
    roll.add_argument("--chart", default="helm/scalekeeper")
    roll.add_argument("--image", required=True)
    roll.add_argument("--client-secret", required=True, help="Secret with a reader's tls.crt/tls.key/ca.crt")
    roll.add_argument("--server-name", required=True, help="TLS name of the server certificate")
    args = parser.parse_args()
    return loop(args) if args.command == "loop" else rollout(args)


if __name__ == "__main__":
    sys.exit(main())
