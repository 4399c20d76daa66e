"""Property-based fuzzing of every HTTP route, and of both TLS ports, with random and hostile input.

The property: whatever a client with a valid certificate sends, the answer is
a client error or a success, never an HTTP 5xx, the server never logs an
unexpected error, and it stays up and ready; bytes that are not TLS at all,
or a request cut off mid-body, leave the ports healthy.

Inputs (``fuzz_support.py``): arbitrary unicode and percent-encoded paths,
strings far past every length limit, control and bidi characters, path
separators, out-of-range numbers, malformed page tokens, malformed and
mistyped JSON, undecodable bytes, unknown methods. The gRPC side is fuzzed
by test_fuzz_grpc.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import urllib.parse

import pytest
from fuzz_support import EXAMPLES, FUZZ, TARGET, identifiers, int32s, page_tokens
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reliability_helpers import readyz
from server_harness import ServerProcess, client_ssl_context

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)


# -- HTTP ----------------------------------------------------------------------------------------------


class RawHttps:
    """One TLS connection per request, reading at most what the check needs (watch bodies never end)."""

    def __init__(self, server: ServerProcess) -> None:
        self.port = server.http_port
        self.context: ssl.SSLContext = client_ssl_context(server.pki.ca_file, server.pki.clients["writer"])

    def status(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
        connection = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=10)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                connection.putheader(key, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            if not path.startswith("/v1/watch"):
                response.read()
            return response.status
        finally:
            connection.close()


@pytest.fixture(scope="module")
def https(fuzz_server: ServerProcess) -> RawHttps:
    return RawHttps(fuzz_server)


def _q(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def _assert_not_server_error(status: int, what: str) -> None:
    assert status < 500, f"{what} -> HTTP {status}"


@FUZZ
@given(namespace=identifiers(), page_size=st.one_of(st.text(max_size=30), int32s.map(str)), token=page_tokens)
def test_http_list(https: RawHttps, namespace: str, page_size: str, token: str) -> None:
    path = f"/v1/deployments?namespace={_q(namespace)}&page_size={_q(page_size)}&page_token={_q(token)}"
    _assert_not_server_error(https.status("GET", path), f"GET {path[:200]}")


@FUZZ
@given(namespace=identifiers(), name=identifiers())
def test_http_get(https: RawHttps, namespace: str, name: str) -> None:
    path = f"/v1/namespaces/{_q(namespace)}/deployments/{_q(name)}/replicas"
    _assert_not_server_error(https.status("GET", path), f"GET {path[:200]}")


@FUZZ
@given(
    name=st.one_of(st.just(TARGET), identifiers()),
    body=st.one_of(
        st.fixed_dictionaries(
            {"replicas": st.one_of(int32s, st.integers(), st.floats(), st.text(max_size=10), json_values)},
            optional={"expectedDesiredVersion": st.one_of(st.text(max_size=20), json_values)},
        ).map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=300),
        st.just(b'{"replicas": 1e400}'),
        st.just(b'{"replicas": 99999999999999999999999999}'),
        st.just(b'{"replicas": 1, "replicas": -1}'),
        st.just(b"{" * 5000),
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", ""]),
)
# Found by this test: the apiserver answered 500 to a malformed resourceVersion precondition.
@example(name=TARGET, body=b'{"replicas": 0, "expectedDesiredVersion": ":"}', content_type="application/json")
def test_http_put(https: RawHttps, fuzz_namespace: str, name: str, body: bytes, content_type: str) -> None:
    path = f"/v1/namespaces/{fuzz_namespace}/deployments/{_q(name)}/replicas"
    headers = {"Content-Type": content_type} if content_type else {}
    _assert_not_server_error(https.status("PUT", path, body, headers), f"PUT {path[:120]} {body[:100]!r}")


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(namespace=identifiers())
def test_http_watch(https: RawHttps, namespace: str) -> None:
    path = f"/v1/watch/deployments?namespace={_q(namespace)}"
    _assert_not_server_error(https.status("GET", path), f"GET {path[:200]}")


@FUZZ
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"]),
    path=st.one_of(
        st.sampled_from(["/v1/deployments", "/v1/namespaces/a/deployments/b/replicas", "/v1/watch/deployments"]),
        st.text(max_size=200).map(lambda t: "/" + _q(t)),
        st.lists(st.text(max_size=20).map(_q), max_size=8).map(lambda parts: "/" + "/".join(parts)),
        st.just("/" + "a/" * 3000),
    ),
)
def test_http_any_route(https: RawHttps, method: str, path: str) -> None:
    if method == "GET" and path.startswith("/v1/watch"):
        path += "?namespace=-"  # an invalid namespace: a quick answer instead of a stream
    _assert_not_server_error(https.status(method, path), f"{method} {path[:200]}")


def test_garbage_on_the_tls_ports(fuzz_server: ServerProcess) -> None:
    """Bytes that are not TLS at all, then a TLS client that hangs up mid-request: the ports stay healthy."""
    for port in (fuzz_server.grpc_port, fuzz_server.http_port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 4096 + b"GET / HTTP/1.1\r\n\r\n")
            with contextlib.suppress(OSError):
                sock.recv(100)
    context = client_ssl_context(fuzz_server.pki.ca_file, fuzz_server.pki.clients["writer"])
    with (
        socket.create_connection(("127.0.0.1", fuzz_server.http_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"PUT /v1/namespaces/a/deployments/b/replicas HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    assert readyz(fuzz_server) == 200
