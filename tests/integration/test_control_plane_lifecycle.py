"""The harness's control plane as processes: fault injection, start, stop, and the cluster-up/down CLI.

The fault tests (an apiserver killed, restarted or frozen; etcd compacted)
rely on the port and the data surviving, so they are checked here before the
reliability tests use them. Every way a control plane ends (a clean stop, a
killed owner, a failed start, ``cluster-down``) must leave no process or
directory behind, or later runs inherit stale state. The API the control
plane serves is covered by test_control_plane.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from polling import eventually
from scalekeeper_dev.controlplane import Components, ControlPlane, ControlPlaneError
from scalekeeper_dev.testcluster import external_kubeconfig_from_env

needs_local_binaries = pytest.mark.skipif(
    external_kubeconfig_from_env() is not None, reason="starts its own control plane"
)


def test_apiserver_restart_and_pause_keep_port_and_data(control_plane: ControlPlane, admin_api: ApiClient) -> None:
    core = client.CoreV1Api(admin_api)
    marker = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(generate_name="restart-")))
    server, etcd_pid = control_plane.server, control_plane.pids["etcd"]

    control_plane.restart_apiserver(kill=True)
    assert control_plane.server == server
    assert control_plane.pids["etcd"] == etcd_pid
    assert core.read_namespace(marker.metadata.name).metadata.uid == marker.metadata.uid

    control_plane.pause_apiserver()
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 -- a timeout, whatever the client wraps it in
            core.read_namespace(marker.metadata.name, _request_timeout=1.0)
    finally:
        control_plane.resume_apiserver()
    assert (
        eventually(
            lambda: core.read_namespace(marker.metadata.name), "the marker namespace", retry_on=(Exception,)
        ).metadata.uid
        == marker.metadata.uid
    )


def test_etcd_compaction(control_plane: ControlPlane, admin_api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    before = control_plane.etcd_revision()
    core.patch_namespaced_config_map("c", namespace, {"data": {"k": "v"}})
    compacted = control_plane.compact_etcd()
    assert compacted > before
    with pytest.raises(ControlPlaneError, match="compacted"):
        control_plane.compact_etcd(before)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@needs_local_binaries
@pytest.mark.parametrize("components", list(Components))
def test_stop_leaves_no_process_or_directory_behind(components: Components) -> None:
    plane = ControlPlane(components=components)
    with plane:
        pids = plane.pids
        workdir = plane.workdir
        assert set(pids) == set(components.names)
        assert set(plane.ready_after) == {*components.names, "total"}
        assert all(not _gone(pid) for pid in pids.values())
    assert all(_gone(pid) for pid in pids.values())
    assert not workdir.exists()
    plane.stop()  # idempotent


@needs_local_binaries
def test_a_killed_owner_takes_every_component_with_it(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: each component must die with its parent (PR_SET_PDEATHSIG)."""
    import json
    import signal
    import subprocess
    import sys
    import textwrap

    owner_script = textwrap.dedent(
        f"""
        import json, pathlib, sys
        from scalekeeper_dev.controlplane import ControlPlane
        with ControlPlane(pathlib.Path({str(tmp_path / "cp")!r})) as plane:
            print(json.dumps(plane.pids), flush=True)
            sys.stdin.read()  # until killed
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", owner_script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert set(pids) == set(Components.CLUSTER.names)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    eventually(lambda: _all_gone(pids.values()), f"every component gone: {pids}", timeout=10)


@needs_local_binaries
def test_a_failed_start_cleans_up(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "cp", extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited"):
        plane.start()
    assert plane.pids == {}


@needs_local_binaries
def test_cluster_up_and_down_cli(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scalekeeper_dev", *args, "--dev-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    up = cli("cluster-up")
    try:
        assert up.returncode == 0, up.stderr
        assert "export KUBECONFIG=" in up.stdout
        assert "ready in " in up.stdout
        pids = json.loads((tmp_path / "cluster" / "state.json").read_text())["pids"]
        assert set(pids) == set(Components.CLUSTER.names)
        # Each component's version is printed beside its pid.
        assert "Kubernetes v1.37" in up.stdout
        assert "etcd Version: 3.6" in up.stdout
        from kubernetes import config

        with config.new_client_from_config(config_file=str(tmp_path / "kubeconfig")) as api:
            names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
        assert "kube-system" in names
        again = cli("cluster-up")
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = cli("cluster-down")
    assert down.returncode == 0, down.stderr
    # The children of the detached supervisor are reaped by init, maybe a moment later.
    eventually(lambda: _all_gone(pids.values()), f"every child process gone: {pids}", timeout=10)
    assert not (tmp_path / "kubeconfig").exists()
    assert not (tmp_path / "cluster").exists()


def _all_gone(pids: Any) -> bool:
    # A zombie (State: Z) is dead, merely not yet reaped by its new parent.
    statuses = [Path(f"/proc/{pid}/status") for pid in pids]
    return all(not status.exists() or "\nState:\tZ" in status.read_text() for status in statuses)
