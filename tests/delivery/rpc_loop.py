"""Zero-downtime check for `make test-upgrade`: traffic through the Service while Helm rolls the pods.

On the host, with kubectl and helm only (the same on kind and on the local
real-node cluster):

1. A target Deployment (pause containers) for the writers, and a pod from the
   application image running ``traffic.py`` (both transports, readers, a
   writer, watches) against the release's Service by its cluster DNS name.
2. ``helm upgrade --reuse-values`` with a new pod-template annotation rolls
   every pod; the writer keeps issuing SetReplicas throughout the rollout.
3. The leader pod (the Lease's holder) is deleted under traffic: another
   replica must hold the Lease within the Lease's duration.
4. The traffic stops; its summary (calls, failures, longest gap, watch ends)
   is printed. Fails on any failed call, a watch that ended without a
   retryable status, a missed takeover, or a last SetReplicas not applied to
   the Deployment (no reconcile lost across rollout and failover).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POD = "scalekeeper-traffic"
TARGET_NAMESPACE = "scalekeeper-upgrade-target"
TARGET = "web"
CERT_DIR = "/etc/scalekeeper/client"
STOP_FILE = "/tmp/stop"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


class Cluster:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.kubectl = [args.kubectl, "--context", args.context]

    def run(self, *command: str, stdin: str | None = None, quiet: bool = False) -> str:
        if not quiet:
            print("+", " ".join(command), flush=True)
        result = subprocess.run(command, input=stdin, text=True, capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout

    def k(self, *args: str, stdin: str | None = None, quiet: bool = False) -> str:
        return self.run(*self.kubectl, *args, stdin=stdin, quiet=quiet)

    def apply(self, obj: dict[str, Any]) -> None:
        self.k("apply", "-f", "-", stdin=json.dumps(obj))

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.k("get", *args, "-o", "json", quiet=True))


def target_objects() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": TARGET}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TARGET_NAMESPACE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": TARGET, "namespace": TARGET_NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent"}],
                        "terminationGracePeriodSeconds": 0,
                    },
                },
            },
        },
    ]


def traffic_pod(args: argparse.Namespace) -> dict[str, Any]:
    secret_volumes = [
        {"name": role, "secret": {"secretName": secret}}
        for role, secret in (("reader", args.reader_secret), ("writer", args.writer_secret))
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": args.namespace, "labels": {"app.kubernetes.io/name": POD}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "traffic",
                    "image": args.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python",
                        "/opt/traffic/traffic.py",
                        f"--target={args.release}.{args.namespace}.svc:8443",
                        f"--server-name={args.server_name}",
                        f"--cert-dir={CERT_DIR}",
                        f"--namespace={TARGET_NAMESPACE}",
                        f"--deployment={TARGET}",
                        f"--stop-file={STOP_FILE}",
                    ],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [
                        {"name": "script", "mountPath": "/opt/traffic", "readOnly": True},
                        *(
                            {"name": v["name"], "mountPath": f"{CERT_DIR}/{v['name']}", "readOnly": True}
                            for v in secret_volumes
                        ),
                    ],
                }
            ],
            "volumes": [{"name": "script", "configMap": {"name": POD}}, *secret_volumes],
        },
    }


def leader_failover(cluster: Cluster, args: argparse.Namespace) -> float:
    """Delete the Lease holder's pod; seconds until another pod holds the Lease (fails past its duration)."""
    deployment = cluster.get("deployment", args.release, "--namespace", args.namespace)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    lease_path = ("lease", env["SCALEKEEPER_LEASE_NAME"], "--namespace", args.namespace)
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    leader, duration = "", 0
    # The rollout's old pods may still be draining (and the old leader still leading): wait
    # until only the current pods run and one of them holds the Lease.
    deadline = time.monotonic() + 120
    while not leader:
        pods = [  # the Deployment's pods (the chart's test pod has the same labels)
            p
            for p in cluster.get("pods", "--namespace", args.namespace, "--selector", selector)["items"]
            if any(o["kind"] == "ReplicaSet" for o in p["metadata"].get("ownerReferences", []))
        ]
        live = {p["metadata"]["name"] for p in pods if "deletionTimestamp" not in p["metadata"]}
        lease = cluster.get(*lease_path)["spec"]
        holder, duration = lease.get("holderIdentity", ""), lease["leaseDurationSeconds"]
        if len(pods) == len(live) == deployment["spec"]["replicas"] and holder in live:
            leader = holder
        elif time.monotonic() > deadline:
            raise RuntimeError(f"no current pod holds the Lease (holder {holder!r}, pods {sorted(live)})")
        else:
            time.sleep(0.5)
    cluster.k("delete", "pod", leader, "--namespace", args.namespace, "--wait=false")
    deleted = time.monotonic()
    while time.monotonic() - deleted < duration + 30:
        holder = cluster.get(*lease_path)["spec"].get("holderIdentity", "")
        if holder not in ("", leader):
            took = time.monotonic() - deleted
            print(f"leader {leader} deleted: {holder} holds the Lease after {took:.1f}s (lease duration {duration}s)")
            if took > duration:
                raise RuntimeError(f"takeover took {took:.1f}s, longer than the lease duration ({duration}s)")
            return took
        time.sleep(0.2)
    raise RuntimeError(f"no other replica took the Lease within {duration + 30}s of deleting {leader}")


def rollout(args: argparse.Namespace) -> int:
    cluster = Cluster(args)
    ns = ["--namespace", args.namespace]
    for obj in target_objects():
        cluster.apply(obj)
    here = Path(__file__).parent
    configmap = cluster.k(
        "create", "configmap", POD, *ns, f"--from-file={here / 'traffic.py'}", "--dry-run=client", "-o=json"
    )
    cluster.k("apply", "-f", "-", stdin=configmap)
    cluster.k("delete", "pod", POD, *ns, "--ignore-not-found", "--wait")
    cluster.apply(traffic_pod(args))
    cluster.k("wait", "--for=condition=Ready", f"pod/{POD}", *ns, "--timeout=120s")
    started = time.monotonic()
    takeover = None
    try:
        cluster.run(
            args.helm, "upgrade", args.release, args.chart, "--kube-context", args.context, *ns,
            "--reuse-values", "--set-string", f"podAnnotations.scalekeeper\\.dev/rollout={time.time_ns()}",
            "--wait", "--atomic", "--timeout", "10m",
        )  # fmt: skip
        print(f"rolling upgrade done in {time.monotonic() - started:.1f}s", flush=True)
        takeover = leader_failover(cluster, args)
        cluster.k("rollout", "status", f"deployment/{args.release}", *ns, "--timeout=300s")
    finally:
        cluster.k("exec", POD, *ns, "--", "python", "-c", f"open({STOP_FILE!r}, 'w').close()")
    deadline = time.monotonic() + 60
    phase = ""
    while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
        phase = cluster.get("pod", POD, *ns)["status"].get("phase", "")
        time.sleep(0.5)
    logs = cluster.k("logs", POD, *ns)
    print(logs, flush=True)
    summary = next((json.loads(line[8:]) for line in logs.splitlines() if line.startswith("SUMMARY ")), None)
    if summary is None or phase != "Succeeded":
        print(f"traffic saw failed calls or broken watches (pod phase {phase or 'unknown'})", file=sys.stderr)
        return 1
    applied = wait_applied(cluster, summary["last_written"])
    print(
        f"upgrade + failover: {summary['calls']} calls, {summary['failed']} failed, "
        f"retried after a shutdown's CANCELLED {summary['retried_after_shutdown_cancel']}, "
        f"longest gap {summary['longest_gap_seconds']}s, watch ends {summary['watch_ends']} "
        f"(opened {summary['watch_opens']}, each re-synced), "
        f"leader takeover {takeover:.1f}s, last SetReplicas ({summary['last_written']}) applied: {applied}"
    )
    return 0 if applied else 1


def wait_applied(cluster: Cluster, replicas: int, timeout: float = 60.0) -> bool:
    """Whether the target Deployment reaches the last acknowledged SetReplicas value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.get("deployment", TARGET, "--namespace", TARGET_NAMESPACE)["spec"]["replicas"] == replicas:
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--helm", default="helm")
    parser.add_argument("--context", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--chart", default="helm/scalekeeper")
    parser.add_argument("--image", required=True)
    parser.add_argument("--reader-secret", required=True, help="Secret with a reader's tls.crt/tls.key/ca.crt")
    parser.add_argument("--writer-secret", required=True, help="Secret with a writer's tls.crt/tls.key/ca.crt")
    parser.add_argument("--server-name", required=True, help="TLS name of the server certificate")
    return rollout(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
