"""The server against a failing apiserver: killed, frozen, and restarted with its history compacted.

Each test breaks the shared control plane and restores it in ``finally``. The
server's promises under test: it says so on /readyz while it cannot trust its
cache, it re-syncs by itself when the apiserver is back, it serves no stale
value after that, and no desired state set meanwhile is lost.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator

import pytest
from reliability_helpers import Kube, get, metric, poll, readyz
from server_harness import ServerProcess

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper_dev.controlplane import ControlPlane

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
    poll(lambda: get(stub, namespace, "plain").spec_replicas == 1, "the cache to hold the Deployments", 30)
    stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="managed", replicas=2), timeout=10)
    poll(lambda: kube.spec_replicas(namespace, "managed") == 2, "the controller to scale 'managed' to 2", 60)

    control_plane.stop_apiserver(kill=True)
    try:
        poll(lambda: readyz(server) == 503, "/readyz to drop while the apiserver is down", DETECT_TIMEOUT)
        assert server.returncode is None, "the server must keep running without an apiserver"
    finally:
        control_plane.start_apiserver()

    # Right after the restart, possibly before the server re-synced: a direct
    # change it must not miss, and a desired state the controller must apply.
    kube.scale(namespace, "plain", 4)
    kube.set_desired(namespace, "managed", 5)

    poll(lambda: readyz(server) == 200, "/readyz to recover", RECOVER_TIMEOUT)
    poll(lambda: get(stub, namespace, "plain").spec_replicas == 4, "the change made after the restart", 10)
    # Once the new value is served, the old one never comes back (no stale cache after the re-list).
    for _ in range(50):
        assert get(stub, namespace, "plain").spec_replicas == 4
    poll(lambda: kube.spec_replicas(namespace, "managed") == 5, "the reconcile of the change made after restart", 60)
    poll(lambda: get(stub, namespace, "managed").desired_replicas == 5, "GetReplicas to show desired 5", 10)
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
    poll(lambda: get(stub, namespace, "frozen").spec_replicas == 1, "the cache to hold the Deployment", 30)
    timeouts_before = metric(server, "scalekeeper_watch_restarts_total", reason="timeout")

    control_plane.pause_apiserver()
    frozen_at = time.monotonic()
    try:
        # A SIGSTOPped apiserver keeps its connections open and silent: only the read timeout can tell.
        poll(lambda: readyz(server) == 503, "/readyz to drop while the apiserver is frozen", DETECT_TIMEOUT)
        detected_after = time.monotonic() - frozen_at
        assert metric(server, "scalekeeper_watch_restarts_total", reason="timeout") > timeouts_before
    finally:
        control_plane.resume_apiserver()
    # 2 s watches + 4 s read timeout: detection well inside the window, not at some default minutes later.
    assert detected_after < 4 + 2 + 10, f"stuck watch detected after {detected_after:.1f}s"

    poll(lambda: readyz(server) == 200, "/readyz to recover after SIGCONT", RECOVER_TIMEOUT)
    kube.scale(namespace, "frozen", 3)
    poll(lambda: get(stub, namespace, "frozen").spec_replicas == 3, "a change after recovery", 10)
    assert server.returncode is None


def test_compacted_history_forces_a_relist_without_missing_a_change(
    control_plane: ControlPlane,
    start_server: StartServer,
    namespace: str,
    deployments: Callable[..., list[str]],
    kube: Kube,
) -> None:
    """410 Gone on re-watch: the server's resourceVersion predates the restarted apiserver's watch cache.

    The server is held (SIGSTOP) across the apiserver's restart so that its
    first contact with the new apiserver is the re-watch from its old
    resourceVersion, not a list after a failed connection: that is what a
    long GC pause or CPU starvation looks like, and what the 410 path is for.
    """
    deployments(namespace, ["gone"], replicas=1)
    server = start_server()
    stub = server.stub("reader")
    poll(lambda: get(stub, namespace, "gone").spec_replicas == 1, "the cache to hold the Deployment", 30)
    expired_before = metric(server, "scalekeeper_watch_restarts_total", reason="expired")

    server.signal(signal.SIGSTOP)
    try:
        control_plane.restart_apiserver()  # SIGTERM: watches end cleanly; a fresh watch cache
        kube.scale(namespace, "gone", 3)  # the change that must not be missed
        control_plane.compact_etcd()  # and the server's old revision is gone from etcd too
    finally:
        server.signal(signal.SIGCONT)

    poll(
        lambda: metric(server, "scalekeeper_watch_restarts_total", reason="expired") > expired_before,
        "scalekeeper_watch_restarts_total{reason='expired'} to rise",
        RECOVER_TIMEOUT,
    )
    poll(lambda: readyz(server) == 200, "/readyz after the re-list", RECOVER_TIMEOUT)
    poll(lambda: get(stub, namespace, "gone").spec_replicas == 3, "the change made while the server was held", 10)
    assert server.returncode is None


@pytest.fixture(autouse=True)
def _control_plane_restored(control_plane: ControlPlane) -> Iterator[None]:
    """A test that fails half-way must not leave the next one a paused or stopped apiserver."""
    yield
    if len(control_plane.pids) < 2:
        control_plane.start_apiserver()
    control_plane.resume_apiserver()
