"""A real Kubernetes control plane (etcd + kube-apiserver) as child processes.

Integration tests, ``make cluster-up`` and ``make run`` all need a genuine
apiserver (RBAC, admission, watch semantics, /scale, CRDs, TokenRequest) but
no nodes, so only etcd and kube-apiserver run, on loopback and random free
ports, from a per-run directory holding certificates, etcd data and logs.
There is no controller-manager: no ReplicaSets/Pods, Deployment status stays
empty, no garbage collection, deleted namespaces stay ``Terminating`` and no
``default`` ServiceAccount is created (the ServiceAccount admission plugin is
disabled so objects do not wait for one).

Stray processes are the classic failure of such harnesses, so each child runs
in its own process group (a Ctrl-C at the terminal reaches only the parent,
which then tears down in order), gets ``PR_SET_PDEATHSIG`` (killed if the
parent dies, even by SIGKILL), and is stopped by ``stop()``, by an ``atexit``
hook, and on SIGTERM/SIGHUP (turned into ``KeyboardInterrupt`` so that
``finally`` blocks and fixture teardown run).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from scalekeeper_dev import kubeconfig, pki, toolchain

ADMIN_USER = "scalekeeper-admin"
ADMIN_GROUP = "system:masters"  # bypasses RBAC: the admin can do anything
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_POLL_INTERVAL = 0.1

JSON = dict[str, Any]


class ControlPlaneError(RuntimeError):
    pass


class ChildExited(ControlPlaneError):
    """etcd or kube-apiserver exited when it should be running."""


def free_port() -> int:
    """A TCP port free on loopback right now (another process may still take it: see ``start``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent_preexec(parent_pid: int) -> Callable[[], None]:
    """Return a ``preexec_fn`` making the child die with its parent (Linux only)."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork() and prctl(): then no signal comes.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _Child:
    """One supervised child process, restartable with the same arguments."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.alive:
            raise ControlPlaneError(f"{self.name} is already running (pid {self.pid})")
        self._log = self.log_path.open("ab")
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the
        # process: only the main thread lives as long as the process, so other
        # threads rely on stop()/atexit alone.
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = die_with_parent_preexec(os.getpid()) if on_main_thread else None
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=preexec,  # noqa: PLW1509 -- deliberate, see above
            close_fds=True,
        )
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            code = self.process.returncode if self.process is not None else None
            raise ChildExited(
                f"{self.name} exited (code {code}); last lines of {self.log_path}:\n{_tail(self.log_path)}"
            )

    def signal(self, signum: int) -> None:
        if self.alive and self.process is not None:
            self.process.send_signal(signum)

    def pause(self) -> None:
        self.check_alive()
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        """SIGTERM (or SIGKILL), wait, then SIGKILL the whole process group."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                if self.paused:
                    self.resume()  # a stopped process cannot act on SIGTERM
                process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=timeout)
            # Anything the child left in its group goes too (its pgid is its pid).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.paused = False


_LIVE: set[ControlPlane] = set()
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def _stop_all_live() -> None:
    with _LIVE_LOCK:
        planes = list(_LIVE)
    for plane in planes:
        with contextlib.suppress(Exception):
            plane.stop()


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def _install_process_hooks() -> None:
    """atexit always; SIGTERM/SIGHUP handlers only where nobody else installed one."""
    global _HOOKS_INSTALLED  # noqa: PLW0603 -- once per process
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_stop_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _raise_keyboard_interrupt)


class ControlPlane:
    """etcd + kube-apiserver for one run; use as a context manager.

    >>> with ControlPlane() as cp:                      # doctest: +SKIP
    ...     subprocess.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "ns"])

    Attributes once started: ``server`` (https URL), ``kubeconfig`` (admin,
    group system:masters), ``ca`` (the :class:`pki.CertificateAuthority` that
    signs the serving certificate and that the apiserver trusts for client
    certificates), ``ca_file``, ``workdir``, ``etcd_url``.
    """

    ca: pki.CertificateAuthority

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        ready_timeout: float = 60.0,
        extra_apiserver_args: Sequence[str] = (),
        etcd_binary: Path | None = None,
        apiserver_binary: Path | None = None,
    ) -> None:
        """``workdir``: kept after ``stop()`` (its etcd data is wiped at start); default: a temp dir, removed."""
        self._given_workdir = workdir
        self.ready_timeout = ready_timeout
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._etcd_binary = etcd_binary
        self._apiserver_binary = apiserver_binary
        self.workdir = Path()
        self.server = ""
        self.etcd_url = ""
        self.apiserver_port = 0
        self.etcd_port = 0
        self._etcd: _Child | None = None
        self._apiserver: _Child | None = None
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
            _install_process_hooks()
            etcd_bin = self._etcd_binary or toolchain.ensure("etcd")
            apiserver_bin = self._apiserver_binary or toolchain.ensure("kube-apiserver")
            if self._given_workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="scalekeeper-cp-"))
            else:
                self.workdir = self._given_workdir.resolve()
                self.workdir.mkdir(parents=True, exist_ok=True)
            with _LIVE_LOCK:
                _LIVE.add(self)
            self._started = True
            try:
                self._write_pki()
                # Free ports are picked, not reserved: another process may bind
                # one first, so a failed start is retried with fresh ports.
                attempts = 3
                for attempt in range(attempts):
                    try:
                        self._start_processes(etcd_bin, apiserver_bin)
                        break
                    except ChildExited as error:
                        self._stop_processes()
                        if attempt == attempts - 1 or "address already in use" not in str(error):
                            raise
            except BaseException:
                # Keep the directory: the error names its logs.
                self._stop_processes()
                with _LIVE_LOCK:
                    _LIVE.discard(self)
                self._started = False
                raise

    def stop(self) -> None:
        """Stop the apiserver, then etcd; idempotent; safe on a half-started control plane."""
        with self._lock:
            if not self._started:
                return
            self._stop_processes()
            if self._given_workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)
            self._started = False

    def _stop_processes(self) -> None:
        for child in (self._apiserver, self._etcd):
            if child is not None:
                child.stop()

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the running children, by name (``etcd``, ``kube-apiserver``)."""
        return {
            child.name: child.pid
            for child in (self._etcd, self._apiserver)
            if child is not None and child.alive and child.pid is not None
        }

    # -- files -------------------------------------------------------------

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user ``scalekeeper-admin``, group ``system:masters``)."""
        return self.workdir / "admin.kubeconfig"

    def _write_pki(self) -> None:
        pki_dir = self.pki_dir
        self.ca = pki.CertificateAuthority.create("scalekeeper-test-kubernetes-ca")
        self.ca.write(pki_dir / "ca.crt", pki_dir / "ca.key")
        serving = self.ca.issue_server(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", "10.0.0.1"),
        )
        serving.write(pki_dir / "apiserver.crt", pki_dir / "apiserver.key")
        self._admin = self.ca.issue_client(ADMIN_USER, organizations=(ADMIN_GROUP,))
        self._admin.write(pki_dir / "admin.crt", pki_dir / "admin.key")
        sa_key = pki.new_private_key()
        (pki_dir / "sa.key").write_bytes(pki.private_key_pem(sa_key))
        (pki_dir / "sa.key").chmod(0o600)
        (pki_dir / "sa.pub").write_bytes(pki.public_key_pem(sa_key))

    # -- processes ---------------------------------------------------------

    def _start_processes(self, etcd_bin: Path, apiserver_bin: Path) -> None:
        self.etcd_port, peer_port, self.apiserver_port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._etcd = _Child(
            "etcd",
            [
                str(etcd_bin),
                "--name=scalekeeper-test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=scalekeeper-test={peer_url}",
                "--unsafe-no-fsync=true",  # test data: durability costs time for nothing
                "--enable-grpc-gateway=true",  # JSON API used by compact_etcd()
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        pki_dir = self.pki_dir
        self._apiserver = _Child(
            "kube-apiserver",
            [
                str(apiserver_bin),
                f"--etcd-servers={self.etcd_url}",
                f"--secure-port={self.apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The `kubernetes` Service's endpoints may not be loopback, and
                # nothing in-cluster uses them here (no nodes).
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # No controller-manager creates the `default` ServiceAccount.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                *self._extra_apiserver_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._etcd.start()
        # The apiserver gives up quickly on an etcd that is not there yet.
        self._wait("etcd", self._etcd, self._etcd_healthy)
        self._apiserver.start()
        self._wait_apiserver_ready()
        self._write_admin_kubeconfig()

    def _write_admin_kubeconfig(self) -> None:
        kubeconfig.write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_pem=self.ca.cert_pem,
            client_cert_pem=self._admin.cert_pem,
            client_key_pem=self._admin.key_pem,
        )

    def _wait(self, what: str, child: _Child, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            child.check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {self.ready_timeout}s; last lines of {child.log_path}:\n"
                    f"{_tail(child.log_path)}"
                )
            time.sleep(_POLL_INTERVAL)

    def _wait_apiserver_ready(self) -> None:
        assert self._apiserver is not None
        self._wait("kube-apiserver", self._apiserver, self._apiserver_ready)

    def _etcd_healthy(self) -> bool:
        try:
            status, body = self._etcd_call("GET", "/health")
        except OSError:
            return False
        return status == 200 and body.get("health") == "true"

    def _apiserver_ready(self) -> bool:
        try:
            status, _ = self.request("GET", "/readyz", timeout=2.0)
        except (OSError, ValueError):
            return False
        return status == 200

    # -- apiserver faults (same port, same etcd) ----------------------------

    def _require_apiserver(self) -> _Child:
        if not self._started or self._apiserver is None:
            raise ControlPlaneError("the control plane is not running")
        return self._apiserver

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

    def _etcd_call(self, method: str, path: str, body: JSON | None = None) -> tuple[int, JSON]:
        parsed = urllib.parse.urlsplit(self.etcd_url)
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=5.0)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def etcd_revision(self) -> int:
        """The current etcd revision (what Kubernetes reports as resourceVersion)."""
        # Any range answer carries the store revision in its header.
        status, body = self._etcd_call("POST", "/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
        if status != 200:
            raise ControlPlaneError(f"etcd range failed: {status} {body}")
        return int(body["header"]["revision"])

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd history up to ``revision`` (default: the current one); returns it.

        Watches and lists from an older resourceVersion then fail with 410 Gone
        once the apiserver's watch cache no longer covers them.
        """
        target = self.etcd_revision() if revision is None else revision
        status, body = self._etcd_call("POST", "/v3/kv/compaction", {"revision": str(target), "physical": True})
        if status != 200:
            raise ControlPlaneError(f"etcd compaction to {target} failed: {status} {body}")
        return target

    # -- credentials -------------------------------------------------------

    def write_kubeconfig(
        self,
        path: Path,
        user: str,
        groups: Sequence[str] = (),
        *,
        validity: dt.timedelta = pki.DEFAULT_VALIDITY,
    ) -> Path:
        """Write a kubeconfig authenticating as ``user`` in ``groups`` by a client certificate."""
        cert = self.ca.issue_client(user, organizations=groups, validity=validity)
        return kubeconfig.write_kubeconfig(
            path,
            server=self.server,
            ca_pem=self.ca.cert_pem,
            client_cert_pem=cert.cert_pem,
            client_key_pem=cert.key_pem,
        )

    def write_token_kubeconfig(self, path: Path, token: str) -> Path:
        """Write a kubeconfig authenticating with a bearer token (e.g. a ServiceAccount's)."""
        return kubeconfig.write_kubeconfig(path, server=self.server, ca_pem=self.ca.cert_pem, token=token)

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        audiences: Sequence[str] = (),
        expiration_seconds: int = 3600,
        create: bool = True,
    ) -> str:
        """A token for ServiceAccount ``namespace/name`` from the TokenRequest API.

        ``create`` makes the ServiceAccount if missing (the namespace must
        exist). Without ``audiences`` the token is for the apiserver itself.
        """
        base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        if create:
            status, body = self.request("POST", base, {"metadata": {"name": name}})
            if status not in (201, 409):
                raise ControlPlaneError(f"creating ServiceAccount {namespace}/{name}: {status} {body}")
        spec: JSON = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        status, body = self.request(
            "POST",
            f"{base}/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        if status != 201:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name}: {status} {body}")
        token: str = body["status"]["token"]
        return token

    def request(self, method: str, path: str, body: JSON | None = None, *, timeout: float = 10.0) -> tuple[int, JSON]:
        """One raw JSON call as the admin; returns (status, parsed body or {"text": ...})."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        conn = http.client.HTTPSConnection("127.0.0.1", self.apiserver_port, context=context, timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"text": data.decode(errors="replace")}
        return response.status, parsed if isinstance(parsed, dict) else {"value": parsed}
