"""The real node: a pod really runs, and teardown leaves nothing on the host.

Runs where a node can (Linux, root: this machine and CI); elsewhere skipped
with the reason. One cluster: it takes ~30 s to start.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from polling import eventually
from scalekeeper_dev.node import configs, host
from scalekeeper_dev.node.realcluster import RealNodeCluster
from scalekeeper_dev.node.realnode import NodeError, RealNode, ensure_prerequisites

_REASON = host.unsupported_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


_NETNS_RUN_DIRS = ("/run/netns", "/var/run/netns")


def host_state() -> dict[str, str]:
    """What the node could change on the host: rules, routes, links, namespaces, mounts."""
    commands = {
        "iptables": ["iptables-save"],
        "routes": ["ip", "-4", "route", "show"],
        "links": ["ip", "-o", "link", "show"],
        "namespaces": ["ip", "netns", "list"],
    }
    state = {
        name: _without_counters(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        for name, argv in commands.items()
    }
    # iproute2 bind-mounts /run/netns the first time anything adds a namespace on a host, and never unmounts it
    # (``ip netns delete`` leaves it): on a fresh machine it appears with the node, as the packages do, and stays.
    mounts = (line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines())
    state["mounts"] = "\n".join(sorted(mount for mount in mounts if mount not in _NETNS_RUN_DIRS))
    return state


def _without_counters(text: str) -> str:
    # iptables-save stamps the time and packet counters: compare the rules only.
    return "\n".join(line.split(" [")[0] for line in text.splitlines() if not line.startswith("#"))


def pause_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "pause", "image": configs.PAUSE_IMAGE, "imagePullPolicy": "Never"}],
            "terminationGracePeriodSeconds": 0,
        },
    }


def test_a_pod_runs_and_teardown_leaves_nothing(tmp_path: Path) -> None:
    # On a fresh machine the node's packages (iptables among them) are installed here, before the host's state is
    # read: installing them is not something teardown has to undo.
    ensure_prerequisites()
    before = host_state()
    with RealNodeCluster(tmp_path) as cluster:
        status, body = cluster.plane.request("POST", "/api/v1/namespaces/default/pods", pause_pod("pause"))
        assert status == 201, body

        def running() -> bool:
            _, pod = cluster.plane.request("GET", "/api/v1/namespaces/default/pods/pause")
            return pod.get("status", {}).get("phase") == "Running"

        eventually(running, "the pause pod Running on the real node", timeout=60)
        node = cluster.node
        # One node per host (two kubelets would share the kubepods cgroups): a second one is refused
        # and, refused, touches nothing of the first.
        second = RealNode(tmp_path / "second")
        with pytest.raises(NodeError, match="another real node runs on this host"):
            second.prepare()
        second.stop()
        assert node.network.exists()
        # While it runs, the pod shows in what teardown has to clear.
        leftovers = node.leftovers()
        assert any(item.startswith("shim pid") for item in leftovers), leftovers
        assert any(item.startswith("cgroup") for item in leftovers), leftovers
        assert any(item.startswith("network namespace cni-") for item in leftovers), leftovers
    assert node.leftovers() == []
    assert host_state() == before
