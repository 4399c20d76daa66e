"""One real node: containerd, kubelet, kube-proxy (iptables) and CoreDNS, supervised.

Lifecycle, in the order a cluster needs it:

1. :meth:`RealNode.prepare` (before the control plane): host checks, packages,
   tools, the node's network (kube-apiserver listens on the host's end of its
   veth) and the node's own CA, which the apiserver needs at start to call the
   kubelet (:meth:`apiserver_args`).
2. :meth:`RealNode.start` (once the apiserver is ready): client certificates
   from the cluster CA, RBAC for the kubelet and CoreDNS, the components, then
   the Node Ready. Start-to-ready of each component is returned and printed.
3. :meth:`RealNode.stop`: components, then everything they left
   (:mod:`.teardown`), then the network; :meth:`leftovers` must then be empty.

Each component runs in its own process group with PR_SET_PDEATHSIG, logs to
``<log_dir>/<component>.log`` and enters the node's network namespace through
``nsenter --net``.
"""

from __future__ import annotations

import fcntl
import http.client
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

from scalekeeper_dev import kubeconfig, pki, supervised, toolchain
from scalekeeper_dev.node import configs, host, pause, rbac, teardown
from scalekeeper_dev.node.network import NodeNetwork

NODE_NAME = "scalekeeper-node"
COREDNS_USER = "scalekeeper:coredns"
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
TOOLS = (*COMPONENTS, "containerd-shim-runc-v2", "ctr")
_READY_TIMEOUT = 120.0
HOST_LOCK = Path("/run/scalekeeper-real-node.lock")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

AdminRequest = rbac.AdminRequest


class NodeError(RuntimeError):
    pass


class RealNode:
    def __init__(
        self, root: Path, network: NodeNetwork | None = None, name: str = NODE_NAME, log_dir: Path | None = None
    ) -> None:
        self.files = configs.NodeFiles(root.resolve())
        self.log_dir = (log_dir or root).resolve()  # beside the control plane's logs when given
        self.network = network or NodeNetwork()
        self.name = name
        self._children: list[supervised.SupervisedChild] = []
        self._namespaces_before: set[str] = set()
        self._binaries: dict[str, Path] = {}
        self.ready_after: dict[str, float] = {}
        self._host_lock: IO[str] | None = None

    @property
    def pki_dir(self) -> Path:
        return self.files.path("pki")

    # -- before the control plane -------------------------------------------

    def prepare(self) -> None:
        self._binaries = ensure_prerequisites()
        self._take_host_lock()
        supervised.register(self)
        # What a killed predecessor left (its pods' namespaces cannot be told from others': kept).
        teardown.clear(self.files.root, self.files.containerd_socket, [])
        self.network.down()
        shutil.rmtree(self.files.root, ignore_errors=True)
        self.pki_dir.mkdir(parents=True)
        self._namespaces_before = _pod_namespaces()
        self.network.up()
        # The node's own CA: the kubelet's serving certificate and the client
        # certificate the apiserver presents to the kubelet (logs, exec).
        node_ca = pki.CertificateAuthority.create("scalekeeper-node-ca")
        node_ca.write(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        node_ca.issue_server(self.name, dns_names=(self.name,), ip_addresses=(self.network.node_address,)).write(
            self.pki_dir / "kubelet-serving.crt", self.pki_dir / "kubelet-serving.key"
        )
        node_ca.issue_client("kube-apiserver-kubelet-client", organizations=("system:masters",)).write(
            self.pki_dir / "apiserver-kubelet-client.crt", self.pki_dir / "apiserver-kubelet-client.key"
        )

    def apiserver_args(self) -> list[str]:
        """What kube-apiserver needs to reach this node's kubelet (by IP: no name is ever resolved)."""
        return [
            f"--kubelet-client-certificate={self.pki_dir / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={self.pki_dir / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={self.pki_dir / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    # -- with the control plane ----------------------------------------------

    def start(self, server: str, cluster_ca: pki.CertificateAuthority, admin: AdminRequest) -> dict[str, float]:
        """Start the components and wait for the Node to be Ready; seconds to ready by component."""
        started = time.monotonic()
        kubeconfigs = {
            "kubelet": cluster_ca.issue_client(f"system:node:{self.name}", organizations=("system:nodes",)),
            "kube-proxy": cluster_ca.issue_client("system:kube-proxy"),
            "coredns": cluster_ca.issue_client(COREDNS_USER),
        }
        for component, cert in kubeconfigs.items():
            kubeconfig.write_kubeconfig(
                self._kubeconfig(component),
                server=server,
                ca_pem=cluster_ca.cert_pem,
                client_cert_pem=cert.cert_pem,
                client_key_pem=cert.key_pem,
            )
        rbac.grant(admin, self.name, COREDNS_USER)
        self._write_configs()
        containerd = self._child(
            "containerd", [str(self._binaries["containerd"]), "--config", str(self._config("containerd.toml"))]
        )
        self.ready_after = supervised.wait_ready({containerd: self._containerd_ready}, _READY_TIMEOUT)
        self._ctr("images", "import", str(pause.archive()))
        kubelet = self._child("kubelet", [
            str(self._binaries["kubelet"]),
            f"--config={self._config('kubelet.yaml')}",
            f"--kubeconfig={self._kubeconfig('kubelet')}",
            f"--root-dir={self.files.kubelet_root}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.network.node_address}",
        ])  # fmt: skip
        proxy = self._child(
            "kube-proxy", [str(self._binaries["kube-proxy"]), f"--config={self._config('kube-proxy.yaml')}"]
        )
        dns = self._child("coredns", [str(self._binaries["coredns"]), "-conf", str(self._config("Corefile"))])
        address = self.network.node_address
        self.ready_after |= supervised.wait_ready(
            {
                kubelet: lambda: _http_ok(address, 10248, "/healthz"),
                proxy: lambda: _http_ok(address, 10256, "/healthz"),
                dns: lambda: _http_ok(address, 8181, "/ready"),
            },
            _READY_TIMEOUT,
        )
        deadline = time.monotonic() + _READY_TIMEOUT
        while not _node_ready(admin, self.name):
            kubelet.check_alive()
            if time.monotonic() > deadline:
                raise NodeError(f"node {self.name} not Ready after {_READY_TIMEOUT}s; see {kubelet.log_path}")
            time.sleep(0.2)
        self.ready_after["node Ready"] = time.monotonic() - started
        return self.ready_after

    def import_image(self, archive: Path) -> None:
        """Load a docker-archive or OCI archive into the node's containerd (what `kind load` does)."""
        import_image(self.files, archive)

    @property
    def binaries(self) -> dict[str, Path]:
        """The components' binaries (not the shim and ctr)."""
        return {name: path for name, path in self._binaries.items() if name in COMPONENTS}

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self._children if c.alive and c.pid is not None}

    # -- teardown --------------------------------------------------------------

    def stop_components(self) -> None:
        """Stop the components and clear what they left; the network stays (the apiserver still listens on it)."""
        if self._host_lock is None:
            return  # never prepared: nothing here is ours (another node may be running)
        for child in reversed(self._children):
            child.stop()
        self._children.clear()
        self._clear_leftovers()

    def stop(self) -> None:
        """Stop the components, clear what they left, remove the network; idempotent."""
        if self._host_lock is None:
            return
        self.stop_components()
        self.network.down()
        shutil.rmtree(self.files.root, ignore_errors=True)
        supervised.unregister(self)
        self._host_lock.close()  # releases the lock
        self._host_lock = None

    def _take_host_lock(self) -> None:
        """One real node per host: two kubelets would share the kubepods cgroups (and teardown clears them)."""
        lock = HOST_LOCK.open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NodeError(f"another real node runs on this host ({HOST_LOCK} is locked): make cluster-down") from None
        self._host_lock = lock

    def leftovers(self) -> list[str]:
        """Whatever this node left on the host (empty after stop())."""
        new_namespaces = sorted(_pod_namespaces() - self._namespaces_before)
        found = teardown.leftovers(self.files.root, self.files.containerd_socket, new_namespaces)
        found += self.network.leftovers()
        found += [f"process {name} (pid {pid})" for name, pid in self.pids.items()]
        return found

    def _clear_leftovers(self) -> None:
        new_namespaces = sorted(_pod_namespaces() - self._namespaces_before)
        teardown.clear(self.files.root, self.files.containerd_socket, new_namespaces)

    # -- helpers ---------------------------------------------------------------

    def _config(self, name: str) -> Path:
        return self.files.path(name)

    def _kubeconfig(self, component: str) -> Path:
        return self.files.path(f"{component}.kubeconfig")

    def _write_configs(self) -> None:
        network, files = self.network, self.files
        files.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (files.cni_conf_dir / "10-scalekeeper.conflist").write_text(configs.cni_config(files, network))
        self._config("containerd.toml").write_text(configs.containerd_config(files))
        self._config("kubelet.yaml").write_text(configs.kubelet_config(files, network, self.pki_dir))
        proxy_config = configs.kube_proxy_config(network, self._kubeconfig("kube-proxy"), self.name)
        self._config("kube-proxy.yaml").write_text(proxy_config)
        self._config("Corefile").write_text(configs.corefile(network, self._kubeconfig("coredns")))
        self._config("resolv.conf").write_text(configs.resolv_conf(network))

    def _child(self, name: str, argv: list[str]) -> supervised.SupervisedChild:
        # containerd finds its shim on PATH; everything else is called by absolute path.
        path = f"{self._binaries['containerd-shim-runc-v2'].parent}:{_SYSTEM_PATH}"
        child = supervised.SupervisedChild(
            name, self.network.enter(["env", f"PATH={path}", *argv]), self.log_dir / f"{name}.log"
        )
        self._children.append(child)
        child.start()
        return child

    def _ctr(self, *args: str) -> str:
        return _ctr(self.files, *args)

    def _containerd_ready(self) -> bool:
        try:
            self._ctr("version")
        except NodeError:
            return False
        return True


def ensure_prerequisites() -> dict[str, Path]:
    """Fail with the reason on an unsupported host; else install packages, build tools and the pause image."""
    reason = host.unsupported_reason()
    if reason is not None:
        raise NodeError(reason)
    host.ensure_packages()
    binaries = {binary: toolchain.ensure(binary) for binary in TOOLS}
    pause.archive()
    return binaries


def import_image(files: configs.NodeFiles, archive: Path) -> None:
    """Load an image archive into a running node's containerd, where the kubelet finds it."""
    if not files.containerd_socket.exists():
        raise NodeError(f"no node is running here ({files.containerd_socket} missing): make cluster-up NODES=real")
    _ctr(files, "images", "import", str(archive.resolve()))


def _ctr(files: configs.NodeFiles, *args: str) -> str:
    ctr = toolchain.ensure("ctr")  # ctr wants an absolute socket path
    argv = [str(ctr), "--address", str(files.containerd_socket), "--namespace", "k8s.io", *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _pod_namespaces() -> set[str]:
    """Network namespaces named like containerd's CNI names them (``cni-<uuid>``)."""
    directory = Path("/run/netns")
    return {entry.name for entry in directory.glob("cni-*")} if directory.is_dir() else set()


def _http_ok(address: str, port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(address, port, timeout=2.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _node_ready(admin: AdminRequest, name: str) -> bool:
    status, node = admin("GET", f"/api/v1/nodes/{name}", None)
    conditions = node.get("status", {}).get("conditions", []) if status == 200 else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
