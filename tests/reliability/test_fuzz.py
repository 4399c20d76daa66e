"""Property-based fuzzing of every RPC and HTTP route with random and hostile input.

The property: whatever a client with a valid certificate sends, the answer is
a client error or a success, never a server error (gRPC INTERNAL, UNKNOWN,
or UNAVAILABLE, which scalekeeper uses for its own bugs while ready; HTTP
5xx), the server never logs an unexpected error, and it stays up and ready.

Inputs: arbitrary unicode, strings far past every length limit, control and
bidi characters, path separators, negative and overflowing numbers (also
varints wider than int32, which only a hand-made protobuf can carry),
malformed page tokens, malformed and mistyped JSON, undecodable bytes.
Example counts are bounded so the module runs in about a minute.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability_helpers import CLIENT_ERROR_CODES, internal_errors_in_log, readyz
from server_harness import ServerPki, ServerProcess, client_ssl_context, server_factory

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import manifests

TARGET = "fuzz-target"
EXAMPLES = 100
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
HOSTILE_CHARS = ["a", "A", "-", ".", "/", "%", "é", "\x00", "\n", "\u202e", "\ufeff", "😀", "\\", "..", "%2F", " "]


def _long(chars: list[str], low: int, high: int) -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(chars), st.integers(low, high))


def identifiers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.just(TARGET),
        st.text(max_size=80),
        st.text(alphabet="abcz09-.", min_size=1, max_size=300),
        _long(HOSTILE_CHARS, 60, 70_000),
        st.lists(st.sampled_from(HOSTILE_CHARS), max_size=40).map("".join),
    )


int32s = st.one_of(
    st.integers(INT32_MIN, INT32_MAX), st.sampled_from([0, -1, 1, 1000, 1001, INT32_MAX, INT32_MIN, INT32_MAX - 1])
)
page_tokens = st.one_of(
    st.just(""),
    st.text(max_size=100),
    st.binary(max_size=200).map(lambda b: b.hex()),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-", max_size=400),
    _long(["A", "=", "%", "é"], 1000, 100_000),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)


# -- the server under fuzz (one for the module: hypothesis re-runs the test body, not the fixtures) -----


@pytest.fixture(scope="module")
def fuzz_namespace(admin_api: Any) -> Iterator[str]:
    from kubernetes import client

    from scalekeeper_dev.testcluster import dns_label

    name = dns_label("fuzz", max_length=40)
    core, apps = client.CoreV1Api(admin_api), client.AppsV1Api(admin_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    apps.create_namespaced_deployment(name, manifests.deployment(TARGET, 1))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def server(
    test_cluster: Any, scalekeeper_crd: str, fuzz_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    pki_files = ServerPki.create(tmp_path_factory.mktemp("fuzz-pki"))
    with server_factory(test_cluster.admin_kubeconfig, pki_files, tmp_path_factory.mktemp("fuzz-log")) as start:
        process = start()
        yield process
        # The whole module's property, checked once at the end: no bug was logged, still ready.
        assert process.returncode is None, "the server crashed"
        assert readyz(process) == 200, "the server is no longer ready"
        # Hostile input is the client's fault: nothing of it may be logged as a server error.
        bugs = internal_errors_in_log(process)
        assert not bugs, bugs[:3]


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> replicas_pb2_grpc.ReplicaServiceStub:
    return server.stub("writer")


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> grpc.Channel:
    return server.channel("writer")


def _code(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _assert_client_error(code: grpc.StatusCode, what: str) -> None:
    assert code in CLIENT_ERROR_CODES, f"{what} -> {code.name}"


# -- gRPC ----------------------------------------------------------------------------------------------


@FUZZ
@given(namespace=identifiers(), name=identifiers())
def test_get_replicas(stub: Any, namespace: str, name: str) -> None:
    request = pb.GetReplicasRequest(namespace=namespace, name=name)
    _assert_client_error(_code(lambda: stub.GetReplicas(request, timeout=10)), f"GetReplicas({request!r:.200})")


@FUZZ
@given(
    namespace=st.one_of(identifiers(), st.just("<fuzz>")),
    name=identifiers(),
    replicas=int32s,
    expected=st.one_of(st.none(), st.just(""), st.text(max_size=30), _long(["9", "x"], 100, 10_000)),
)
def test_set_replicas(  # noqa: PLR0917 -- pytest fixtures and hypothesis arguments
    stub: Any, fuzz_namespace: str, namespace: str, name: str, replicas: int, expected: str | None
) -> None:
    if namespace == "<fuzz>":
        namespace = fuzz_namespace  # reach the real Deployment, so writes get past validation too
    request = pb.SetReplicasRequest(namespace=namespace, name=name, replicas=replicas)
    if expected is not None:
        request.expected_desired_version = expected
    _assert_client_error(_code(lambda: stub.SetReplicas(request, timeout=10)), f"SetReplicas({request!r:.200})")


@FUZZ
@given(namespace=identifiers(), page_size=int32s, page_token=page_tokens)
def test_list_deployments(stub: Any, namespace: str, page_size: int, page_token: str) -> None:
    request = pb.ListDeploymentsRequest(namespace=namespace, page_size=page_size, page_token=page_token)
    _assert_client_error(_code(lambda: stub.ListDeployments(request, timeout=10)), f"ListDeployments({request!r:.200})")


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(namespace=identifiers())
def test_watch_replicas(stub: Any, namespace: str) -> None:
    stream = stub.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=1.0)
    try:
        for _ in stream:
            break  # a valid namespace: the snapshot starts; that is enough
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    finally:
        stream.cancel()
    # Our own deadline ends a valid, quiet watch.
    assert code in CLIENT_ERROR_CODES | {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}, code.name


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers travel as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _string(number: int, text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return _field(number, 2, _varint(len(data)) + data)


@FUZZ
@given(
    replicas=st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([2**31, 2**32 + 3, 2**63 - 1, -(2**63)])),
    page_size=st.integers(-(2**63), 2**64 - 1),
)
def test_overflowing_varints(channel: grpc.Channel, fuzz_namespace: str, replicas: int, page_size: int) -> None:
    """int32 fields carrying 64-bit values: protobuf truncates; the server must still validate the result."""
    # No serializers: bytes in, bytes out, so the wire can carry what the generated classes refuse.
    set_call = channel.unary_unary("/scalekeeper.v1.ReplicaService/SetReplicas")
    list_call = channel.unary_unary("/scalekeeper.v1.ReplicaService/ListDeployments")
    set_body = _string(1, fuzz_namespace) + _string(2, TARGET) + _field(3, 0, _varint(replicas))
    list_body = _field(2, 0, _varint(page_size))
    _assert_client_error(_code(lambda: set_call(set_body, timeout=10)), f"SetReplicas(replicas varint {replicas})")
    _assert_client_error(_code(lambda: list_call(list_body, timeout=10)), f"ListDeployments(page_size {page_size})")


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(method=st.sampled_from(["GetReplicas", "SetReplicas", "ListDeployments"]), body=st.binary(max_size=300))
def test_undecodable_requests(channel: grpc.Channel, method: str, body: bytes) -> None:
    call = channel.unary_unary(f"/scalekeeper.v1.ReplicaService/{method}")
    code = _code(lambda: call(body, timeout=10))
    _assert_client_error(code, f"{method}({body!r:.100})")


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
def https(server: ServerProcess) -> RawHttps:
    return RawHttps(server)


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


def test_garbage_on_the_tls_ports(server: ServerProcess) -> None:
    """Bytes that are not TLS at all, then a TLS client that hangs up mid-request: the ports stay healthy."""
    for port in (server.grpc_port, server.http_port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 4096 + b"GET / HTTP/1.1\r\n\r\n")
            with contextlib.suppress(OSError):
                sock.recv(100)
    context = client_ssl_context(server.pki.ca_file, server.pki.clients["writer"])
    with (
        socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"PUT /v1/namespaces/a/deployments/b/replicas HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    assert readyz(server) == 200
