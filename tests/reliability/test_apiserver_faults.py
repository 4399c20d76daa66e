"""The server against a failing apiserver: killed, frozen, and with its history compacted.

The kill and freeze tests break the shared control plane and restore it in
``finally``; the compaction test brings its own (its apiserver runs without a
watch cache, see ``uncached_control_plane``). The server's promises under
test: it says so on /readyz while it cannot trust its cache, it re-syncs by
itself when the apiserver is back, it serves no stale value after that, and
no desired state set meanwhile is lost.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from reliability_helpers import Kube, get, metric, readyz
from server_harness import ServerProcess, eventually

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper_dev import manifests
from scalekeeper_dev.controlplane import Components, ControlPlane
from scalekeeper_dev.crd import install_crd_on

StartServer = Callable[..., ServerProcess]

# The server's health port answers within this even while the apiserver is gone.
DETECT_TIMEOUT = 30.0
RECOVER_TIMEOUT = 90.0


def test_apiserver_killed_and_restarted(
    control_plane: ControlPlane,
    start_server: StartServer,
    namespace: str,
    deployments: Callable[..., list[str]],
    kube: Kube,
) -> None:
    deployments(namespace, ["managed", "plain"], replicas=1)
    server = start_server(controller=True)
    stub = server.stub("writer")
    eventually(lambda: get(stub, namespace, "plain").spec_replicas == 1, "the cache to hold the Deployments", 30)
    stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="managed", replicas=2), timeout=10)
    eventually(lambda: kube.spec_replicas(namespace, "managed") == 2, "the controller to scale 'managed' to 2", 60)

    control_plane.stop_apiserver(kill=True)
    try:
        eventually(lambda: readyz(server) == 503, "/readyz to drop while the apiserver is down", DETECT_TIMEOUT)
        assert server.returncode is None, "the server must keep running without an apiserver"
    finally:
        control_plane.start_apiserver()

    # Right after the restart, possibly before the server re-synced: a direct
    # change it must not miss, and a desired state the controller must apply.
    kube.scale(namespace, "plain", 4)
    kube.set_desired(namespace, "managed", 5)

    eventually(lambda: readyz(server) == 200, "/readyz to recover", RECOVER_TIMEOUT)
    eventually(lambda: get(stub, namespace, "plain").spec_replicas == 4, "the change made after the restart", 10)
    # Once the new value is served, the old one never comes back (no stale cache after the re-list).
    for _ in range(50):
        assert get(stub, namespace, "plain").spec_replicas == 4
    eventually(
        lambda: kube.spec_replicas(namespace, "managed") == 5, "the reconcile of the change made after restart", 60
    )
    eventually(lambda: get(stub, namespace, "managed").desired_replicas == 5, "GetReplicas to show desired 5", 10)
    assert server.returncode is None


def test_frozen_apiserver_is_detected_by_the_read_timeout(
    control_plane: ControlPlane,
    start_server: StartServer,
    namespace: str,
    deployments: Callable[..., list[str]],
    kube: Kube,
) -> None:
    deployments(namespace, ["frozen"], replicas=1)
    server = start_server("--watch-timeout-seconds=2", "--watch-read-timeout-seconds=4")
    stub = server.stub("reader")
    eventually(lambda: get(stub, namespace, "frozen").spec_replicas == 1, "the cache to hold the Deployment", 30)
    timeouts_before = metric(server, "scalekeeper_watch_restarts_total", reason="timeout")

    control_plane.pause_apiserver()
    frozen_at = time.monotonic()
    try:
        # A SIGSTOPped apiserver keeps its connections open and silent: only the read timeout can tell.
        eventually(lambda: readyz(server) == 503, "/readyz to drop while the apiserver is frozen", DETECT_TIMEOUT)
        detected_after = time.monotonic() - frozen_at
        assert metric(server, "scalekeeper_watch_restarts_total", reason="timeout") > timeouts_before
    finally:
        control_plane.resume_apiserver()
    # 2 s watches + 4 s read timeout: detection well inside the window, not at some default minutes later.
    assert detected_after < 4 + 2 + 10, f"stuck watch detected after {detected_after:.1f}s"

    eventually(lambda: readyz(server) == 200, "/readyz to recover after SIGCONT", RECOVER_TIMEOUT)
    kube.scale(namespace, "frozen", 3)
    eventually(lambda: get(stub, namespace, "frozen").spec_replicas == 3, "a change after recovery", 10)
    assert server.returncode is None


@pytest.fixture
def uncached_control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of its own whose apiserver serves watches straight from etcd (``--watch-cache=false``).

    With the watch cache, which keeps a window of recent events and follows
    etcd's progress, a watch rarely asks etcd for a compacted revision; without
    it every watch does, so compaction deterministically turns a re-watch from
    an old resourceVersion into 410 Gone, the case under test.
    """
    # The API alone: the open-watch count below must be the server's only.
    with ControlPlane(
        tmp_path / "uncached", components=Components.APISERVER, extra_apiserver_args=["--watch-cache=false"]
    ) as plane:
        install_crd_on(plane.kubeconfig)
        yield plane


def _open_watches(plane: ControlPlane, resource: str) -> float:
    status, body = plane.request("GET", "/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(body["text"]):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "apiserver_longrunning_requests"
                and labels.get("resource") == resource
                and labels.get("verb") == "WATCH"
            ):
                total += sample.value
    return total


def test_compacted_history_forces_a_relist_without_missing_a_change(
    uncached_control_plane: ControlPlane, start_server: StartServer
) -> None:
    """410 Gone on re-watch: the server's resourceVersion was compacted away while it was not looking.

    The server is held (SIGSTOP, as a long GC pause or CPU starvation would)
    until the apiserver has ended its watch (2 s ``timeoutSeconds``, a clean
    end); meanwhile a Deployment changes and etcd is compacted past the
    server's last resourceVersion. On SIGCONT the server re-watches from that
    version, gets 410, must re-list, and must then serve the change.
    """
    from kubernetes import client, config

    plane = uncached_control_plane
    admin = config.new_client_from_config(config_file=str(plane.kubeconfig))
    kube = Kube(admin)
    core = client.CoreV1Api(admin)
    namespace = "compaction"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    kube.apps.create_namespaced_deployment(namespace, manifests.deployment("gone", 1))

    server = start_server("--watch-timeout-seconds=2", "--watch-read-timeout-seconds=4", kubeconfig=plane.kubeconfig)
    stub = server.stub("reader")
    eventually(lambda: get(stub, namespace, "gone").spec_replicas == 1, "the cache to hold the Deployment", 30)
    expired_before = metric(server, "scalekeeper_watch_restarts_total", reason="expired")

    server.signal(signal.SIGSTOP)
    try:
        eventually(lambda: _open_watches(plane, "deployments") == 0, "the apiserver to end the held server's watch", 30)
        kube.scale(namespace, "gone", 3)  # the change the server must not miss
        for i in range(3):  # more history, so that compaction lands strictly after the server's version
            core.create_namespaced_config_map(namespace, {"metadata": {"name": f"filler-{i}"}})
        plane.compact_etcd()
    finally:
        server.signal(signal.SIGCONT)
        admin.close()

    eventually(
        lambda: metric(server, "scalekeeper_watch_restarts_total", reason="expired") > expired_before,
        "scalekeeper_watch_restarts_total{reason='expired'} to rise",
        RECOVER_TIMEOUT,
    )
    eventually(lambda: get(stub, namespace, "gone").spec_replicas == 3, "the change made while the server was held", 10)
    eventually(lambda: readyz(server) == 200, "/readyz after the re-list", RECOVER_TIMEOUT)
    assert server.returncode is None


@pytest.fixture(autouse=True)
def _control_plane_restored(control_plane: ControlPlane) -> Iterator[None]:
    """A test that fails half-way must not leave the next one a paused or stopped apiserver."""
    yield
    if len(control_plane.pids) < 2:
        control_plane.start_apiserver()
    control_plane.resume_apiserver()
