"""The node's network: a namespace of its own, joined to the host by a veth pair.

containerd, kubelet, kube-proxy, CoreDNS and every pod live in the namespace,
so kube-proxy's iptables rules, the CNI bridge and the pods' addresses vanish
with it. The host keeps ``ip_forward`` off: traffic from the namespace can
reach the host's end of the veth (where kube-apiserver listens) and nothing
beyond it. The host gets two routes through the node, to the Service range (so
tests reach ClusterIPs as a client in the cluster would) and to the pod range
(the return path of pods calling the apiserver: pods are not masqueraded).

Processes enter the namespace with ``nsenter --net``: ``ip netns exec`` would
remount /sys and hide /sys/fs/cgroup from the kubelet.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeNetwork:
    """Names and addresses of one node's network (all private to this host)."""

    namespace: str = "scalekeeper-node"
    host_link: str = "skhost0"  # interface names: 15 characters at most
    node_link: str = "sknode0"
    host_address: str = "10.201.0.1"  # kube-apiserver listens here
    node_address: str = "10.201.0.2"  # kubelet, kube-proxy, CoreDNS
    prefix_length: int = 30
    pod_cidr: str = "10.202.0.0/24"
    service_cidr: str = "10.0.0.0/24"

    @property
    def namespace_path(self) -> Path:
        return Path("/run/netns") / self.namespace

    def enter(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the node's namespace (the process keeps the host's mounts)."""
        return ["nsenter", f"--net={self.namespace_path}", "--", *argv]

    @property
    def host_routes(self) -> tuple[str, ...]:
        return (self.service_cidr, self.pod_cidr)

    def exists(self) -> bool:
        return self.namespace_path.exists()

    def up(self) -> None:
        """Create the namespace, the veth pair, addresses and routes (after a leftover is cleared)."""
        self.down()
        inside = ["ip", "netns", "exec", self.namespace]  # fine for one-shot `ip`/`sysctl`
        steps = [
            ["ip", "netns", "add", self.namespace],
            ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.node_link],
            ["ip", "link", "set", self.node_link, "netns", self.namespace],
            ["ip", "addr", "add", f"{self.host_address}/{self.prefix_length}", "dev", self.host_link],
            ["ip", "link", "set", self.host_link, "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
            [*inside, "ip", "addr", "add", f"{self.node_address}/{self.prefix_length}", "dev", self.node_link],
            [*inside, "ip", "link", "set", self.node_link, "up"],
            # kubelet and kube-proxy pick the node's interface from the default route.
            [*inside, "ip", "route", "add", "default", "via", self.host_address],
            [*inside, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            # Pod-to-Service-to-pod on one bridge: replies must pass kube-proxy's NAT.
            [*inside, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
            *(["ip", "route", "replace", cidr, "via", self.node_address] for cidr in self.host_routes),
        ]
        for step in steps:
            _run(step)

    def down(self) -> None:
        """Remove routes, the veth pair and the namespace (with every rule inside it); idempotent."""
        for cidr in self.host_routes:
            _run(["ip", "route", "del", cidr, "via", self.node_address], check=False)
        _run(["ip", "link", "del", self.host_link], check=False)  # deletes its peer too
        if self.exists():
            _run(["ip", "netns", "del", self.namespace])

    def leftovers(self) -> list[str]:
        """What of this network is still on the host (empty after ``down()``)."""
        found = []
        if self.exists():
            found.append(f"network namespace {self.namespace}")
        links = _run(["ip", "-o", "link", "show"], check=False)
        if f" {self.host_link}@" in links or f" {self.host_link}:" in links:
            found.append(f"link {self.host_link}")
        routes = _run(["ip", "-4", "route", "show"], check=False)
        found += [f"route {line}" for line in routes.splitlines() if self.node_address in line]
        return found


def _run(argv: list[str], *, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout
