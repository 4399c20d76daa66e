"""The local Kubernetes control plane: real components as supervised child processes.

Integration tests, ``make cluster-up``, ``make run`` and ``make bench`` need a
genuine cluster: RBAC, admission, watch semantics, /scale, CRDs, TokenRequest,
and controllers that act on what is written. By default
(:attr:`Components.CLUSTER`) etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK run, on loopback and on ports picked at start, from a
per-run directory holding certificates, kubeconfigs, etcd data and one log
per component; Deployments roll out onto KWOK's simulated nodes, Pods become
Ready, the garbage collector and namespace controller clean up.
:attr:`Components.APISERVER` runs etcd and kube-apiserver alone (no Pods, no
Deployment status), for measurements of the API without controller traffic.

Every component is a :class:`~scalekeeper_dev.supervised.SupervisedChild`:
its own process group, killed with its parent, stopped in reverse start order.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalekeeper_dev import controllers, kwok, pki, supervised, toolchain
from scalekeeper_dev.adminapi import AdminApi
from scalekeeper_dev.clusterpki import LOOPBACK, ClusterPki
from scalekeeper_dev.components import Components, Ports, apiserver_argv, etcd_argv
from scalekeeper_dev.etcdclient import EtcdClient
from scalekeeper_dev.supervised import (
    ChildExited,
    ControlPlaneError,
    SupervisedChild,
    die_with_parent_preexec,
    free_port,
    wait_ready,
)

__all__ = [
    "ChildExited",
    "Components",
    "ControlPlane",
    "ControlPlaneError",
    "die_with_parent_preexec",
    "free_port",
]

JSON = dict[str, Any]


class ControlPlane:
    """The components of :class:`Components` for one run; use as a context manager.

    >>> with ControlPlane() as cp:                      # doctest: +SKIP
    ...     subprocess.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "nodes"])

    Attributes once started: ``server`` (https URL), ``kubeconfig`` (admin,
    group system:masters), ``ca`` (the :class:`pki.CertificateAuthority` that
    signs every certificate and that the apiserver trusts for client
    certificates), ``ca_file``, ``workdir``, ``etcd_url``, ``binaries`` (by
    component), ``ready_after`` (seconds from each component's start to ready,
    plus ``total`` from the first start), ``fake_nodes`` (KWOK's Node names).
    """

    ca: pki.CertificateAuthority

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        components: Components = Components.CLUSTER,
        fake_nodes: int = 1,
        apiserver_address: str = LOOPBACK,
        ready_timeout: float = 60.0,
        extra_apiserver_args: Sequence[str] = (),
        etcd_binary: Path | None = None,
        apiserver_binary: Path | None = None,
    ) -> None:
        """``workdir``: kept after ``stop()`` (its etcd data is wiped at start); default: a temp dir, removed.

        ``fake_nodes``: how many KWOK Nodes to create (:attr:`Components.CLUSTER` only).
        ``apiserver_address``: where kube-apiserver listens (a real node's side of loopback: see
        :mod:`scalekeeper_dev.node.network`).
        """
        if components is Components.CLUSTER and fake_nodes < 1:
            raise ValueError("a cluster needs at least one fake node for its Pods")
        self.components = components
        self.apiserver_address = apiserver_address
        self._given_workdir = workdir
        self.ready_timeout = ready_timeout
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._given_binaries = {"etcd": etcd_binary, "kube-apiserver": apiserver_binary}
        self.fake_nodes = [kwok.node_name(i) for i in range(fake_nodes)] if components is Components.CLUSTER else []
        self.binaries: dict[str, Path] = {}
        self.ready_after: dict[str, float] = {}
        self.workdir = Path()
        self.server = ""
        self.etcd_url = ""
        self.apiserver_port = 0
        self.etcd_port = 0
        self._children: dict[str, SupervisedChild] = {}
        # Clients of the components, pointed at their ports once those are picked.
        self._etcd = EtcdClient("")
        self._admin = AdminApi(0, self.files)
        self._started = False
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self.binaries = {
                name: self._given_binaries.get(name) or toolchain.ensure(name) for name in self.components.names
            }
            if self._given_workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="scalekeeper-cp-"))
            else:
                self.workdir = self._given_workdir.resolve()
                self.workdir.mkdir(parents=True, exist_ok=True)
            supervised.register(self)
            self._started = True
            try:
                self.ca = self.files.create(self.apiserver_address)
                # Free ports are picked, not reserved: another process may bind
                # one first, so a failed start is retried with fresh ports.
                attempts = 3
                for attempt in range(attempts):
                    try:
                        self._start_processes()
                        break
                    except ChildExited as error:
                        self._stop_processes()
                        if attempt == attempts - 1 or "address already in use" not in str(error):
                            raise
            except BaseException:
                # Keep the directory: the error names its logs.
                self._stop_processes()
                supervised.unregister(self)
                self._started = False
                raise

    def stop(self) -> None:
        """Stop every component in reverse start order; idempotent; safe on a half-started control plane."""
        with self._lock:
            if not self._started:
                return
            self._stop_processes()
            if self._given_workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            supervised.unregister(self)
            self._started = False

    def _stop_processes(self) -> None:
        for child in reversed(self._children.values()):
            child.stop()

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the running components, by name (``etcd``, ``kube-apiserver``, ...)."""
        return {name: child.pid for name, child in self._children.items() if child.alive and child.pid is not None}

    # -- files -------------------------------------------------------------

    @property
    def files(self) -> ClusterPki:
        return ClusterPki(self.pki_dir)

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.files.ca_cert

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user ``scalekeeper-admin``, group ``system:masters``)."""
        return self.workdir / "admin.kubeconfig"

    def log_file(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    # -- processes ---------------------------------------------------------

    def _child(self, name: str, argv: list[str]) -> SupervisedChild:
        child = SupervisedChild(name, argv, self.log_file(name))
        self._children[name] = child
        return child

    def _start_processes(self) -> None:
        ports = Ports(*(free_port() for _ in range(6)))
        self.etcd_port, self.apiserver_port = ports.etcd, ports.apiserver
        self.etcd_url = f"http://{LOOPBACK}:{ports.etcd}"
        self.server = f"https://{self.apiserver_address}:{ports.apiserver}"
        self._etcd = EtcdClient(self.etcd_url)
        self._admin = AdminApi(ports.apiserver, self.files, self.apiserver_address)
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        self._children = {}
        etcd = self._child("etcd", etcd_argv(self.binaries["etcd"], ports, data_dir))
        apiserver = self._child(
            "kube-apiserver",
            [
                *apiserver_argv(
                    self.binaries["kube-apiserver"], ports, self.files, self.components, self.apiserver_address
                ),
                *self._extra_apiserver_args,
            ],
        )
        etcd.start()
        # The apiserver gives up quickly on an etcd that is not there yet.
        self.ready_after = wait_ready({etcd: self._etcd.healthy}, self.ready_timeout)
        apiserver.start()
        self.ready_after |= wait_ready({apiserver: self._admin.ready}, self.ready_timeout)
        self.files.write_kubeconfig(self.kubeconfig, self.server, "admin")
        if self.components is not Components.APISERVER:
            launch = controllers.Launch(
                self._admin, self.files, self.workdir, self.server, self.binaries, ports, self.fake_nodes, self._child
            )
            self.ready_after |= wait_ready(controllers.launch(launch), self.ready_timeout)
        self.ready_after["total"] = (
            max(child.started_at + self.ready_after[name] for name, child in self._children.items()) - etcd.started_at
        )

    def _wait_apiserver_ready(self) -> None:
        wait_ready({self._require_apiserver(): self._admin.ready}, self.ready_timeout)

    def startup_summary(self) -> str:
        """Each component's start-to-ready time and the whole start's, e.g. for ``make cluster-up``."""
        parts = [f"{name} {self.ready_after[name]:.1f}s" for name in self.components.names if name in self.ready_after]
        return f"ready in {self.ready_after.get('total', 0.0):.1f}s ({', '.join(parts)})"

    # -- apiserver faults (same port, same etcd) ----------------------------

    def _require_apiserver(self) -> SupervisedChild:
        if not self._started or "kube-apiserver" not in self._children:
            raise ControlPlaneError("the control plane is not running")
        return self._children["kube-apiserver"]

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL for a crash); etcd keeps running."""
        with self._lock:
            self._require_apiserver().stop(kill=kill)

    def start_apiserver(self, *, wait: bool = True) -> None:
        """Start kube-apiserver again on the same port; by default wait until /readyz is ok."""
        with self._lock:
            child = self._require_apiserver()
            child.start()
            if wait:
                self._wait_apiserver_ready()

    def restart_apiserver(self, *, kill: bool = False) -> None:
        with self._lock:
            self.stop_apiserver(kill=kill)
            self.start_apiserver()

    def pause_apiserver(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung apiserver)."""
        with self._lock:
            self._require_apiserver().pause()

    def resume_apiserver(self) -> None:
        with self._lock:
            self._require_apiserver().resume()

    # -- etcd --------------------------------------------------------------

    def etcd_revision(self) -> int:
        """The current etcd revision (what Kubernetes reports as resourceVersion)."""
        return self._etcd.revision()

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd history up to ``revision`` (default: the current one); returns it.

        Watches and lists from an older resourceVersion then fail with 410 Gone
        once the apiserver's watch cache no longer covers them.
        """
        target = self.etcd_revision() if revision is None else revision
        self._etcd.compact(target)
        return target

    # -- admin API ----------------------------------------------------------

    def request(self, method: str, path: str, body: JSON | None = None, *, timeout: float = 10.0) -> tuple[int, JSON]:
        """One raw JSON call as the admin; returns (status, parsed body or {"text": ...})."""
        return self._admin.request(method, path, body, timeout=timeout)
