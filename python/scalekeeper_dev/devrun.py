"""``make run``: the server on an embedded default, ready for grpcurl.

With no cluster configured it starts the harness's own cluster (the same
:class:`ControlPlane` the tests use: controllers, scheduler and KWOK's fake
nodes, so the demo Deployments really roll out); with ``KUBECONFIG`` set it
uses that cluster. Either way it installs the CRD, writes development
certificates, creates a couple of demo Deployments, runs the server in the
foreground and prints ready-to-paste grpcurl commands. Ctrl-C stops
everything it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from scalekeeper_dev import devcerts, manifests, toolchain
from scalekeeper_dev.controlplane import ControlPlane
from scalekeeper_dev.crd import install_crd
from scalekeeper_dev.localserver import server_command
from scalekeeper_dev.supervised import die_with_parent_preexec

DEMO_NAMESPACE = "demo"
DEMO_DEPLOYMENTS = {"web": 2, "api": 1}


@contextlib.contextmanager
def _cluster(dev_dir: Path) -> Iterator[Path]:
    """The kubeconfig to use: ``$KUBECONFIG``, else a control plane started here."""
    external = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if external:
        print(f"using the cluster of KUBECONFIG={external}")
        yield Path(external)
        return
    print("starting a local cluster: etcd, kube-apiserver, controller-manager, scheduler, KWOK (no KUBECONFIG set)...")
    with ControlPlane() as plane:
        print(f"local cluster {plane.startup_summary()}", flush=True)
        kubeconfig = dev_dir / "kubeconfig"
        kubeconfig.write_bytes(plane.kubeconfig.read_bytes())
        yield kubeconfig


def _demo_deployments(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": DEMO_NAMESPACE}})
    for name, replicas in DEMO_DEPLOYMENTS.items():
        with contextlib.suppress(ApiException):  # already there from an earlier run
            apps.create_namespaced_deployment(DEMO_NAMESPACE, manifests.deployment(name, replicas))


def _wait_ready(health_port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}; see its log above")
        url = f"http://127.0.0.1:{health_port}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f}s")


def grpcurl_commands(certs: Path, port: int = 8443) -> str:
    grpcurl = "grpcurl" if shutil.which("grpcurl") else toolchain.ensure("grpcurl")
    tls = f"-cacert {certs}/ca.crt -cert {certs}/writer.crt -key {certs}/writer.key"
    reader = f"-cacert {certs}/ca.crt -cert {certs}/reader.crt -key {certs}/reader.key"
    target = f"localhost:{port}"
    service = "scalekeeper.v1.ReplicaService"
    ns = DEMO_NAMESPACE
    return "\n".join(
        [
            f"  {grpcurl} {tls} {target} list",
            f"  {grpcurl} {tls} {target} describe {service}",
            f'  {grpcurl} {reader} -d \'{{"namespace":"{ns}","name":"web"}}\' {target} {service}/GetReplicas',
            f'  {grpcurl} {tls} -d \'{{"namespace":"{ns}","name":"web","replicas":5}}\' {target} {service}/SetReplicas',
            f'  {grpcurl} {reader} -d \'{{"namespace":"{ns}"}}\' {target} {service}/ListDeployments',
            f'  {grpcurl} {reader} -d \'{{"namespace":"{ns}"}}\' {target} {service}/WatchReplicas',
            f"  {grpcurl} {reader} {target} grpc.health.v1.Health/Check",
        ]
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when inside it: shorter commands to paste."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def run(dev_dir: Path) -> int:
    # SIGTERM (an IDE's stop button, `timeout`) tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    dev_dir.mkdir(parents=True, exist_ok=True)
    certs = dev_dir / "certs"
    devcerts.write_dev_certs(certs)
    with _cluster(dev_dir) as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        install_crd(api)
        _demo_deployments(api)
        api.close()
        command = server_command(
            devcerts.DevCertFiles(certs),
            f"--kubeconfig={kubeconfig}",
            f"--readers={devcerts.DEV_IDENTITIES['reader'][0]}",
            f"--writers={devcerts.DEV_IDENTITIES['writer'][0]}",
            "--leader-election-namespace=default",
        )
        # The server must not outlive this process, however it ends.
        server = subprocess.Popen(command, preexec_fn=die_with_parent_preexec(os.getpid()))  # noqa: PLW1509
        try:
            _wait_ready(8080, server)
            shown = _relative(certs)
            print(
                "\nscalekeeper is serving: gRPC on localhost:8443, HTTP/JSON on https://localhost:8444, "
                f"health on http://localhost:8080. Try:\n{grpcurl_commands(shown)}\n"
                f"  curl --cacert {shown}/ca.crt --cert {shown}/reader.crt --key {shown}/reader.key "
                f"https://localhost:8444/v1/deployments?namespace={DEMO_NAMESPACE}\n"
                f"  kubectl --kubeconfig {kubeconfig} get dscale,deployments,pods -n {DEMO_NAMESPACE}\n\n"
                "Watch a rollout: start the WatchReplicas command above in a second terminal, then run\n"
                "SetReplicas: ready_replicas of demo/web climbs to 5 as the Pods become Ready; GetReplicas\n"
                f"shows the same, and `kubectl ... get pods -n {DEMO_NAMESPACE} -w` the Pods themselves.\n\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            return server.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=60)
