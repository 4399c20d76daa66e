"""The real node's configuration: the settings this kind of host needs, and no path off the machine."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import yaml

from scalekeeper_dev.node import configs
from scalekeeper_dev.node.network import NodeNetwork

FILES = configs.NodeFiles(Path("/run/sk/node"))
NETWORK = NodeNetwork()


def test_kubelet_runs_on_cgroup_v1_without_cap_sys_resource_and_never_uses_the_host_resolver() -> None:
    config = yaml.safe_load(configs.kubelet_config(FILES, NETWORK, Path("/run/sk/node/pki")))
    assert config["failCgroupV1"] is False
    assert config["oomScoreAdj"] == 0
    assert config["resolvConf"] == "/run/sk/node/resolv.conf"
    assert config["clusterDNS"] == [NETWORK.node_address]
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["containerRuntimeEndpoint"] == f"unix://{FILES.containerd_socket}"


def test_pods_resolve_through_cluster_dns_only() -> None:
    assert configs.resolv_conf(NETWORK) == f"nameserver {NETWORK.node_address}\n"
    corefile = configs.corefile(NETWORK, Path("/k"))
    assert "forward" not in corefile
    assert f"bind {NETWORK.node_address}" in corefile
    assert f"kubernetes {configs.CLUSTER_DOMAIN}" in corefile


def test_containerd_clamps_oom_scores_and_uses_the_nodes_own_paths() -> None:
    config = tomllib.loads(configs.containerd_config(FILES))
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert config["oom_score"] == 0
    assert config["grpc"]["address"] == str(FILES.containerd_socket)
    assert runtime["cni"]["conf_dir"] == str(FILES.cni_conf_dir)
    assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == configs.PAUSE_IMAGE
    assert all(str(path).startswith(str(FILES.root)) for path in (config["root"], config["state"]))


def test_pod_traffic_is_not_masqueraded() -> None:
    bridge = json.loads(configs.cni_config(FILES, NETWORK))["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": NETWORK.pod_cidr}]]


def test_kube_proxy_uses_iptables_and_leaves_conntrack_sysctls_alone() -> None:
    config = yaml.safe_load(configs.kube_proxy_config(NETWORK, Path("/k"), "node-a"))
    assert config["mode"] == "iptables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["hostnameOverride"] == "node-a"


def test_components_enter_the_node_namespace_without_remounting_sys() -> None:
    argv = NETWORK.enter(["kubelet", "--v=1"])
    assert argv == ["nsenter", f"--net=/run/netns/{NETWORK.namespace}", "--", "kubelet", "--v=1"]
    assert all(len(name) <= 15 for name in (NETWORK.host_link, NETWORK.node_link))
