"""Configuration files of the node's components, rendered for one node directory.

Each setting that departs from a default is here because this kind of host
needs it (the reasons are in ``docs/design.md``, "A real node"):

- cgroup v1 hosts: ``failCgroupV1: false``.
- No CAP_SYS_RESOURCE inside a container host: negative ``oom_score_adj``
  cannot be written, so the kubelet keeps ``oomScoreAdj: 0`` and containerd
  clamps what the kubelet asks for pods (``restrict_oom_score_adj``).
- No name may be resolved through the host's resolver and no packet may leave
  the host: pods get the cluster DNS only (CoreDNS, which forwards nothing),
  and the CNI bridge does not masquerade pod traffic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scalekeeper_dev.node import host
from scalekeeper_dev.node.network import NodeNetwork

CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
NODE_TAINT_KEY = "scalekeeper.dev/real-node"


@dataclass(frozen=True)
class NodeFiles:
    """Where one node keeps its configuration and state."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"


def containerd_config(files: NodeFiles) -> str:
    """containerd 2.x, config version 3 (TOML; every value below is a JSON-compatible literal)."""
    state = files.root / "containerd"
    cri_runtime = '[plugins."io.containerd.cri.v1.runtime"]'
    return f"""version = 3
root = {json.dumps(str(state / "root"))}
state = {json.dumps(str(state / "state"))}
# Lowering its own oom_score_adj needs CAP_SYS_RESOURCE.
oom_score = 0

[grpc]
  address = {json.dumps(str(files.containerd_socket))}

[ttrpc]
  address = {json.dumps(str(files.containerd_socket) + ".ttrpc")}

{cri_runtime}
  enable_selinux = false
  # The kubelet asks for -998 (sandboxes) and -997 (Guaranteed pods): clamp to our own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = {json.dumps(str(host.RUNC))}
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [{json.dumps(str(host.CNI_BIN_DIR))}]
    conf_dir = {json.dumps(str(files.cni_conf_dir))}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {json.dumps(PAUSE_IMAGE)}

[plugins."io.containerd.grpc.v1.cri"]
  # exec/attach/port-forward streams: the node's loopback only.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_config(files: NodeFiles, network: NodeNetwork) -> str:
    config = {
        "cniVersion": "1.0.0",
        "name": "scalekeeper-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                # Pods keep their addresses: nothing is NATed past the node.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(files.root / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2)


def kubelet_config(files: NodeFiles, network: NodeNetwork, pki_dir: Path) -> str:
    """KubeletConfiguration (JSON is YAML)."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": f"unix://{files.containerd_socket}",
        "address": network.node_address,
        "port": 10250,
        "readOnlyPort": 0,
        # Health on the node address: the harness polls it from the host.
        "healthzBindAddress": network.node_address,
        "healthzPort": 10248,
        "tlsCertFile": str(pki_dir / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki_dir / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [network.node_address],
        # Never the host's resolver (pods with dnsPolicy Default get this file).
        "resolvConf": str(files.path("resolv.conf")),
        "registerNode": True,
        # A busy CI disk must not make the kubelet evict the pods under test.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
    }
    return json.dumps(config, indent=2)


def kube_proxy_config(network: NodeNetwork, kubeconfig: Path, node_name: str) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "clusterCIDR": network.pod_cidr,
        "bindAddress": network.node_address,
        "healthzBindAddress": f"{network.node_address}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # In a non-initial network namespace nf_conntrack_max is read-only.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return json.dumps(config, indent=2)


def corefile(network: NodeNetwork, kubeconfig: Path) -> str:
    """CoreDNS: the cluster's names only; everything else is refused, never forwarded."""
    return f""".:53 {{
    bind {network.node_address}
    errors
    health {network.node_address}:8080
    ready {network.node_address}:8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
    }}
    cache 5
}}
"""


def resolv_conf(network: NodeNetwork) -> str:
    return f"nameserver {network.node_address}\n"
