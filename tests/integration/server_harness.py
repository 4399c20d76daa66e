"""The real scalekeeper server as a child process, its certificates, and TLS clients, for integration tests.

Imported by ``conftest.py`` (fixtures) and the transport tests (helpers).
"""

from __future__ import annotations

# Before anything imports grpc: in-process grpc clients follow the same policy.
from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()


import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
import pytest  # noqa: E402

import polling  # noqa: E402
from scalekeeper.v1 import replicas_pb2_grpc  # noqa: E402
from scalekeeper_dev import devcerts, pki  # noqa: E402
from scalekeeper_dev.controlplane import free_port  # noqa: E402
from scalekeeper_dev.localserver import server_command  # noqa: E402
from scalekeeper_dev.manifests import deployment as deployment_manifest  # noqa: E402, F401 (re-exported)

REPO = Path(__file__).resolve().parents[2]
WRITER = devcerts.DEV_IDENTITIES["writer"][1]
READER = devcerts.DEV_IDENTITIES["reader"][1]
STARTUP_TIMEOUT = 60.0


# Calls to a server that is starting, restarting or re-certifying may fail for a while.
TRANSIENT_ERRORS = (AssertionError, OSError, grpc.RpcError, http.client.HTTPException)


def eventually(condition: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """``polling.eventually`` that treats a failing call to the server as "not yet"."""
    return polling.eventually(condition, what, timeout=timeout, interval=interval, retry_on=TRANSIENT_ERRORS)


# -- certificates --------------------------------------------------------------------------------------


@dataclass
class Credential:
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


@dataclass
class ServerPki(devcerts.DevCertFiles):
    """Files for one server: its CA, certificate and key, plus client credentials."""

    ca: pki.CertificateAuthority
    clients: dict[str, Credential] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> ServerPki:
        """The ``make certs`` layout (CA, server, writer, reader), plus clients that must be refused."""
        devcerts.write_dev_certs(directory, force=True)
        files = devcerts.DevCertFiles(directory)
        result = cls(directory, pki.CertificateAuthority.load(files.ca_file, files.ca_key_file))
        for role in ("writer", "reader"):
            result.clients[role] = Credential(*files.client(role))
        result.issue("stranger", "someone-else", uris=("spiffe://scalekeeper.dev/stranger",))
        result.issue(
            "expired",
            "scalekeeper-writer",
            uris=(WRITER,),
            not_before=pki._now() - dt.timedelta(days=2),
            not_after=pki._now() - dt.timedelta(days=1),
        )
        other = pki.CertificateAuthority.create("another-ca")
        foreign = other.issue_client("scalekeeper-writer", uris=(WRITER,))
        foreign.write(directory / "foreign.crt", directory / "foreign.key")
        result.clients["foreign"] = Credential(directory / "foreign.crt", directory / "foreign.key")
        return result

    def issue(self, role: str, common_name: str, **kwargs: Any) -> Credential:
        issued = self.ca.issue_client(common_name, **kwargs)
        credential = Credential(self.directory / f"{role}.crt", self.directory / f"{role}.key")
        issued.write(credential.cert, credential.key)
        self.clients[role] = credential
        return credential


def replace_file(path: Path, data: bytes) -> None:
    """Replace a file atomically (a new inode), as a Secret volume update does."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# -- clients -------------------------------------------------------------------------------------------


def grpc_channel(port: int, ca_file: Path, credential: Credential | None) -> grpc.Channel:
    cert, key = credential.read() if credential else (None, None)
    credentials = grpc.ssl_channel_credentials(ca_file.read_bytes(), key, cert)
    return grpc.secure_channel(f"localhost:{port}", credentials)


def client_ssl_context(ca_file: Path, credential: Credential | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if credential is not None:
        context.load_cert_chain(credential.cert, credential.key)
    return context


@dataclass
class HttpResult:
    status: int
    body: Any
    headers: dict[str, str]


class HttpsClient:
    """A plain ``http.client`` over TLS: one connection per request, so each one re-handshakes."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.context = context

    def connection(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> HttpResult:
        connection = self.connection()
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            headers = {"Content-Type": "application/json"} if data is not None else {}
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            try:
                parsed = json.loads(payload) if payload else None
            except json.JSONDecodeError:
                parsed = payload.decode(errors="replace")
            return HttpResult(response.status, parsed, dict(response.getheaders()))
        finally:
            connection.close()

    def get(self, path: str) -> HttpResult:
        return self.request("GET", path)

    def put(self, path: str, body: Any = None, *, raw: bytes | None = None) -> HttpResult:
        return self.request("PUT", path, body, raw=raw)


# -- the server ----------------------------------------------------------------------------------------


class ServerProcess:
    """``python -m scalekeeper`` as a child process, with its ports and log."""

    def __init__(self, flags: Sequence[str], pki_files: ServerPki, log_file: Path) -> None:
        self.grpc_port, self.http_port, self.health_port = free_port(), free_port(), free_port()
        self.pki = pki_files
        self.log_file = log_file
        self.args = server_command(
            pki_files,
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--health-port={self.health_port}",
            *flags,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._channels: list[grpc.Channel] = []

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEKEEPER_")}
        env["PYTHONPATH"] = str(REPO / "python")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        return self

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def _check_alive(self) -> None:
        if self.returncode is not None:
            pytest.fail(f"scalekeeper exited with {self.returncode}; log:\n{self.log_text()[-4000:]}")

    def health_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_health_port(self, timeout: float = STARTUP_TIMEOUT) -> None:
        def up() -> bool:
            self._check_alive()
            return self.health_get("/healthz")[0] == 200

        eventually(up, "the health port", timeout)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        def ready() -> bool:
            self._check_alive()
            return self.health_get("/readyz")[0] == 200

        eventually(ready, "/readyz to answer 200", timeout)

    def channel(self, role: str | None = "writer", *, ca_file: Path | None = None) -> grpc.Channel:
        credential = self.pki.clients[role] if role else None
        channel = grpc_channel(self.grpc_port, ca_file or self.pki.ca_file, credential)
        self._channels.append(channel)
        return channel

    def stub(self, role: str | None = "writer") -> replicas_pb2_grpc.ReplicaServiceStub:
        return replicas_pb2_grpc.ReplicaServiceStub(self.channel(role))

    def http(self, role: str | None = "writer", *, ca_file: Path | None = None) -> HttpsClient:
        credential = self.pki.clients[role] if role else None
        return HttpsClient(self.http_port, client_ssl_context(ca_file or self.pki.ca_file, credential))

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int | None:
        for channel in self._channels:
            channel.close()
        if self.process is None or self.process.poll() is not None:
            return self.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


StartServer = Callable[..., ServerProcess]


def _default_flags(kubeconfig: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--readers={READER}",
        f"--writers={WRITER}",
        "--no-controller",
        "--drain-seconds=10",
        "--log-level=INFO",
    ]


@contextlib.contextmanager
def server_factory(admin_kubeconfig: Path, default_pki: ServerPki, log_dir: Path) -> Iterator[StartServer]:
    """A ``start(*flags, ...)`` function; every server it started is stopped on exit."""
    started: list[ServerProcess] = []

    def start(
        *extra_flags: str,
        pki_files: ServerPki | None = None,
        wait_ready: bool = True,
        kubeconfig: Path | None = None,
    ) -> ServerProcess:
        flags = _default_flags(kubeconfig or admin_kubeconfig) + list(extra_flags)
        server = ServerProcess(flags, pki_files or default_pki, log_dir / f"scalekeeper-{len(started)}.log")
        started.append(server)
        server.start()
        if wait_ready:
            server.wait_ready()
        else:
            server.wait_health_port()
        return server

    try:
        yield start
    finally:
        for server in started:
            code = server.stop()
            if code not in (0, None):
                print(f"scalekeeper exited with {code}; log tail:\n{server.log_text()[-3000:]}", file=sys.stderr)
