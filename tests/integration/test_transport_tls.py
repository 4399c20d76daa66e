"""The TLS policy of both API ports, probed with real handshakes against the real server.

Raw ``ssl`` sockets are used where the test must choose protocol versions or
cipher suites; a handshake "succeeds" only when the server then answers
(TLS 1.3 servers refuse a client certificate after the client's handshake
finished, so the refusal shows on the first read).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable

import grpc
import pytest
from server_harness import Credential, ServerProcess

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc

# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers with its SETTINGS.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
REFUSED = (ssl.SSLError, ConnectionError, TimeoutError, http.client.HTTPException, socket.timeout)


def tls_probe(
    port: int,
    ca_file: str,
    credential: Credential | None,
    *,
    grpc_port: bool,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> tuple[str, str]:
    """Handshake and exchange one message; returns (protocol version, cipher) or raises."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    if credential is not None:
        context.load_cert_chain(credential.cert, credential.key)
    if minimum is not None or (maximum is not None and maximum < ssl.TLSVersion.TLSv1_2):
        # Let the client offer old versions at all (OpenSSL 3 refuses them at the default level).
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = minimum or ssl.TLSVersion.TLSv1
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers + (":@SECLEVEL=0" if "SECLEVEL" not in ciphers else ""))
    if grpc_port:
        context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        if grpc_port:
            tls.sendall(H2_PREFACE)
        else:
            tls.sendall(b"GET /v1/deployments HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = tls.recv(64)
        if not answer:
            raise ConnectionResetError("the server closed the connection")
        version, cipher = tls.version(), tls.cipher()
        assert version is not None
        assert cipher is not None
        return version, cipher[0]


@pytest.fixture
def probe(scalekeeper_server: ServerProcess) -> Callable[..., tuple[str, str]]:
    def run(port_name: str, role: str | None = "writer", **kwargs: object) -> tuple[str, str]:
        port = scalekeeper_server.grpc_port if port_name == "grpc" else scalekeeper_server.http_port
        credential = scalekeeper_server.pki.clients[role] if role else None
        return tls_probe(port, str(scalekeeper_server.pki.ca_file), credential, grpc_port=port_name == "grpc", **kwargs)

    return run


PORTS = ["grpc", "http"]


@pytest.mark.parametrize("port", PORTS)
def test_good_client_negotiates_tls13(probe: Callable[..., tuple[str, str]], port: str) -> None:
    version, _cipher = probe(port)
    assert version == "TLSv1.3"


@pytest.mark.parametrize("role", [None, "foreign", "expired"])
def test_grpc_refuses_clients_without_a_valid_certificate(scalekeeper_server: ServerProcess, role: str | None) -> None:
    stub = scalekeeper_server.stub(role)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("role", [None, "foreign", "expired"])
def test_http_refuses_clients_without_a_valid_certificate(scalekeeper_server: ServerProcess, role: str | None) -> None:
    with pytest.raises(REFUSED):
        scalekeeper_server.http(role).get("/v1/deployments")


@pytest.mark.parametrize("role", [None, "foreign", "expired"])
@pytest.mark.parametrize("port", PORTS)
def test_raw_handshake_without_valid_certificate_fails(
    probe: Callable[..., tuple[str, str]], port: str, role: str | None
) -> None:
    with pytest.raises(REFUSED):
        probe(port, role)


def test_grpc_refuses_plaintext(scalekeeper_server: ServerProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{scalekeeper_server.grpc_port}") as channel:
        stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_http_refuses_plaintext(scalekeeper_server: ServerProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", scalekeeper_server.http_port, timeout=10)
    try:
        connection.request("GET", "/v1/deployments")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            # The TLS server reads "GET ..." as a malformed ClientHello and hangs up.
            connection.getresponse()
    finally:
        connection.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("port", PORTS)
def test_tls11_refused(probe: Callable[..., tuple[str, str]], port: str) -> None:
    with pytest.raises(REFUSED) as caught:
        probe(port, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(caught.value), "the client could not even offer TLS 1.1"


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-SHA",  # ECDHE but CBC
        "ECDHE-ECDSA-AES256-SHA384",  # ECDHE but CBC
        "AES128-GCM-SHA256",  # static RSA key exchange
        "AES128-SHA",
    ],
)
@pytest.mark.parametrize("port", PORTS)
def test_weak_tls12_ciphers_refused(probe: Callable[..., tuple[str, str]], port: str, cipher: str) -> None:
    with pytest.raises(REFUSED):
        probe(port, maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher)


def test_http_refuses_tls12_even_with_a_strong_cipher(probe: Callable[..., tuple[str, str]]) -> None:
    with pytest.raises(REFUSED):
        probe("http", maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"])
def test_grpc_accepts_tls12_ecdhe_aead(probe: Callable[..., tuple[str, str]], cipher: str) -> None:
    assert probe("grpc", maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher) == ("TLSv1.2", cipher)


def test_grpc_cipher_pin_takes_effect(probe: Callable[..., tuple[str, str]]) -> None:
    """ChaCha20 on TLS 1.2 is NOT in grpc's default list: only our GRPC_SSL_CIPHER_SUITES allows it."""
    cipher = "ECDHE-ECDSA-CHACHA20-POLY1305"
    assert probe("grpc", maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher) == ("TLSv1.2", cipher)
