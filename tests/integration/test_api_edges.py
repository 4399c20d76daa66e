"""Inputs at the edges of the API, over the wire, against the real server and control plane.

Each case here was once answered wrongly: a body that scaled a Deployment to
0, a 503 "retry" for a client's mistake, a body refused because of how it was
framed. Every bad input must get a clear 4xx and change nothing.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.internal import encoder
from kubernetes import client
from server_harness import ServerProcess, client_ssl_context, eventually

from scalekeeper.transport.http_requests import BODY_READ_SECONDS
from scalekeeper.v1 import replicas_pb2 as pb

NAME = "edge"


def _scale_object(admin_api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", NAME
    )


@pytest.fixture
def managed(scalekeeper_server: ServerProcess, namespace: str, deployments: Callable[..., list[str]]) -> str:
    """A Deployment whose desired count is 2; its path on the HTTP mirror."""
    deployments(namespace, [NAME], replicas=2)
    stub = scalekeeper_server.stub("writer")
    eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=NAME)), "the Deployment")
    stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name=NAME, replicas=2), timeout=10)
    # Reads are served from the cache: wait until it holds the DeploymentScale too.
    eventually(
        lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=NAME)).desired_version,
        "the DeploymentScale in the cache",
    )
    return f"/v1/namespaces/{namespace}/deployments/{NAME}/replicas"


def _error_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("level") in {"error", "critical"}]


# -- bodies that are not plainly a count (item 1) -----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"replicas": null}',
        b"{}",
        b'{"expectedDesiredVersion": "x/1"}',
        b'{"replicas": "0"}',
        b'{"replicas": 0.0}',
        b'{"replicas": 1e0}',
        b'{"replicas": false}',
        b'{"replicas": 1, "replicas": 0}',
        b'{"replicas": 0, "expectedDesiredVersion": null}',
    ],
)
def test_bodies_that_are_not_a_count_change_nothing(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str, raw: bytes
) -> None:
    before = _scale_object(admin_api, namespace)
    result = scalekeeper_server.http("writer").put(managed, raw=raw)
    assert (result.status, result.body["code"]) == (400, "INVALID_ARGUMENT"), (raw, result.body)
    after = _scale_object(admin_api, namespace)
    assert after["spec"]["replicas"] == 2
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_a_grpc_set_without_replicas_changes_nothing(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        scalekeeper_server.stub("writer").SetReplicas(pb.SetReplicasRequest(namespace=namespace, name=NAME), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "replicas is required" in caught.value.details()
    assert _scale_object(admin_api, namespace)["spec"]["replicas"] == 2


# -- valid but extreme JSON, and out-of-range numbers (items 2 and 3) ---------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"replicas": ' + b"7" * 6000 + b"}", "digits"),
        (b'{"replicas": ' + b"7" * 4000 + b"}", "digits"),
        (b'{"replicas": 1, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        (b'{"replicas": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}", "nested too deeply"),
        (b'{"replicas": NaN}', "NaN"),
        (b'{"replicas": 2147483648}', "32-bit"),
        (b'{"replicas": -2147483649}', "32-bit"),
    ],
)
def test_extreme_json_is_a_client_error_not_a_server_fault(
    scalekeeper_server: ServerProcess, managed: str, raw: bytes, says: str
) -> None:
    errors_before = len(_error_lines(scalekeeper_server))
    result = scalekeeper_server.http("writer").put(managed, raw=raw)
    assert (result.status, result.body["code"]) == (400, "INVALID_ARGUMENT"), result.body
    assert says in result.body["message"]
    assert len(_error_lines(scalekeeper_server)) == errors_before


@pytest.mark.parametrize(
    "query",
    [
        "page_size=2147483648",
        "page_size=-2147483649",
        "page_size=99999999999999999999999",
        "page_size=" + "9" * 5000,
        "page_size=%EF%BC%91",  # a fullwidth digit, which int() would take
        "page_size=1_0",
        "page_size=+5",
        "pagesize=5",
        "page_size=5&page_size=6",
        "namespace=a&namespace=b",
    ],
)
def test_query_parameters_out_of_range_unknown_or_repeated_are_400(
    scalekeeper_server: ServerProcess, query: str
) -> None:
    result = scalekeeper_server.http("reader").get(f"/v1/deployments?{query}")
    assert (result.status, result.body["code"]) == (400, "INVALID_ARGUMENT"), (query, result.body)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_page_token_nested_deeper_than_the_parser_goes_is_400(scalekeeper_server: ServerProcess, transport: str):
    token = base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()  # still within the URL length limit
    if transport == "http":
        result = scalekeeper_server.http("reader").get(f"/v1/deployments?page_token={token}")
        assert (result.status, result.body["code"]) == (400, "INVALID_ARGUMENT")
        return
    with pytest.raises(grpc.RpcError) as caught:
        scalekeeper_server.stub("reader").ListDeployments(pb.ListDeploymentsRequest(page_token=token), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_query_parameters_on_get_and_set(scalekeeper_server: ServerProcess, managed: str) -> None:
    http = scalekeeper_server.http("writer")
    assert http.get(f"{managed}?pretty=true").status == 400
    assert http.put(f"{managed}?dryRun=All", {"replicas": 0}).status == 400


def _varint(value: int) -> bytes:
    out: list[bytes] = []
    encoder._EncodeVarint(out.append, value)
    return b"".join(out)


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        # An unknown field nested as groups, deeper than the parser allows.
        ("GetReplicas", bytes([(15 << 3) | 3]) * 10_000 + bytes([(15 << 3) | 4]) * 10_000),
        ("GetReplicas", b"\x0a\x02\xff\xfe"),  # a string that is not UTF-8
        # Varints beyond int32: read whole (the request fields are int64), never truncated into range.
        ("ListDeployments", b"\x10" + _varint(2**31)),
        ("ListDeployments", b"\x10" + _varint(2**64 - 1)),
        ("ListDeployments", b"\x10" + _varint(2**32 + 5)),
    ],
)
def test_grpc_requests_the_parser_refuses_are_invalid_argument(
    scalekeeper_server: ServerProcess, method: str, raw: bytes
) -> None:
    call = scalekeeper_server.channel("reader").unary_unary(f"/scalekeeper.v1.ReplicaService/{method}")
    with pytest.raises(grpc.RpcError) as caught:
        call(raw, timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()


def test_a_grpc_count_beyond_int32_is_refused_not_truncated(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str
) -> None:
    # 2**32 + 3 truncated to 32 bits is 3: a valid count the caller never asked for.
    raw = pb.SetReplicasRequest(namespace=namespace, name=NAME).SerializeToString() + b"\x18" + _varint(2**32 + 3)
    call = scalekeeper_server.channel("writer").unary_unary("/scalekeeper.v1.ReplicaService/SetReplicas")
    with pytest.raises(grpc.RpcError) as caught:
        call(raw, timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert str(2**32 + 3) in caught.value.details()
    assert _scale_object(admin_api, namespace)["spec"]["replicas"] == 2


# -- HTTP framing must not matter (item 4) ------------------------------------------------------------


def _exchange(server: ServerProcess, writes: list[bytes], timeout: float = 10) -> tuple[int, Any]:
    """Send a request in separate writes (so separate TLS records); return the answer's status and JSON body.

    Between writes the server gets a moment to answer early: an answer before
    the body is complete is the bug this guards against, so it ends the
    sending at once instead of racing the next write.
    """
    context = client_ssl_context(server.pki.ca_file, server.pki.clients["writer"])
    with (
        socket.create_connection(("localhost", server.http_port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        answer = b""
        for index, data in enumerate(writes):
            if index:
                answer = _receive(tls, timeout=0.2, then=timeout)
                if answer:
                    break  # answered before the body was complete
            try:
                tls.sendall(data)
            except OSError:
                break  # refused mid-body (over the limit): the answer is waiting
        return _parse_answer(answer, tls)


def _receive(tls: socket.socket, timeout: float, then: float) -> bytes:
    """Application data that arrives within ``timeout`` (TLS session tickets are not; select() would count them)."""
    tls.settimeout(timeout)
    try:
        return tls.recv(65536)
    except TimeoutError:
        return b""
    finally:
        tls.settimeout(then)


def _parse_answer(received: bytes, tls: socket.socket) -> tuple[int, Any]:
    while b"\r\n\r\n" not in received:
        received += tls.recv(65536) or pytest.fail(f"connection closed mid-answer: {received!r}")
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        body += tls.recv(65536) or pytest.fail(f"connection closed mid-answer: {received!r}")
    return int(status_line.split()[1]), json.loads(body)


def _head(path: str, framing: str) -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode()


def _chunks(*parts: bytes) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(part), part) for part in parts] + [b"0\r\n\r\n"]


def _body_in_pieces(replicas: int) -> Iterator[bytes]:
    body = b'{"replicas": %d}' % replicas
    yield from (body[:3], body[3:9], body[9:])


def test_a_body_in_several_tls_records_with_content_length(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str
) -> None:
    pieces = list(_body_in_pieces(3))
    status, body = _exchange(scalekeeper_server, [_head(managed, f"Content-Length: {len(b''.join(pieces))}"), *pieces])
    assert (status, body.get("desiredReplicas")) == (200, 3), body
    assert _scale_object(admin_api, namespace)["spec"]["replicas"] == 3


def test_a_chunked_body(scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str):
    pieces = _chunks(*_body_in_pieces(4))
    status, body = _exchange(scalekeeper_server, [_head(managed, "Transfer-Encoding: chunked"), *pieces])
    assert (status, body.get("desiredReplicas")) == (200, 4), body
    assert _scale_object(admin_api, namespace)["spec"]["replicas"] == 4


def test_content_length_sent_in_two_writes(scalekeeper_server: ServerProcess, managed: str) -> None:
    body = b'{"replicas": 5}'
    head = _head(managed, f"Content-Length: {len(body)}")
    status, answer = _exchange(scalekeeper_server, [head + body[:7], body[7:]])
    assert (status, answer.get("desiredReplicas")) == (200, 5), answer


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_413(scalekeeper_server: ServerProcess, managed: str, framing: str) -> None:
    padding = b" " * 40_000
    parts = [b'{"replicas": 1', padding, padding, b"}"]
    if framing == "chunked":
        head, pieces = _head(managed, "Transfer-Encoding: chunked"), _chunks(*parts)
    else:
        head, pieces = _head(managed, f"Content-Length: {sum(map(len, parts))}"), parts
    status, body = _exchange(scalekeeper_server, [head, *pieces])
    assert (status, body["code"]) == (413, "RESOURCE_EXHAUSTED"), body


def test_a_malformed_chunk_after_the_headers_is_400_in_bounded_time(
    scalekeeper_server: ServerProcess, managed: str
) -> None:
    # aiohttp itself refuses a malformed chunk that comes with the headers; one that comes later never fails
    # the read, so only the body deadline ends the call.
    writes = [_head(managed, "Transfer-Encoding: chunked"), b"zz\r\n{}\r\n"]
    status, body = _exchange(scalekeeper_server, writes, timeout=BODY_READ_SECONDS + 10)
    assert (status, body["code"]) == (400, "INVALID_ARGUMENT"), body
    assert "did not arrive" in body["message"]


def test_a_client_that_hangs_up_mid_body_is_no_server_error(scalekeeper_server: ServerProcess, managed: str) -> None:
    context = client_ssl_context(scalekeeper_server.pki.ca_file, scalekeeper_server.pki.clients["writer"])
    calls = len([r for r in scalekeeper_server.log_records() if r.get("msg") == "call"])
    with (
        socket.create_connection(("localhost", scalekeeper_server.http_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(_head(managed, "Content-Length: 1000") + b'{"replicas": 1')

    def accounted() -> list[dict[str, Any]]:
        return [r for r in scalekeeper_server.log_records() if r.get("msg") == "call"][calls:]

    [call] = eventually(accounted, "the call in the access log")
    assert (call["method"], call["code"]) == ("SetReplicas", "CANCELLED")
    assert not _error_lines(scalekeeper_server)


# -- expected versions that can never match (item 5) ----------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_expected_versions_that_never_match_are_aborted(
    scalekeeper_server: ServerProcess, managed: str, namespace: str, transport: str
) -> None:
    current = scalekeeper_server.stub("writer").GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=NAME))
    uid = current.desired_version.split("/")[0]
    never = [f"{uid}/0", f"{uid}/999999999", "00000000-0000-0000-0000-000000000000/1"]
    for version in never:
        assert _set(scalekeeper_server, transport, namespace, version)[0] == "ABORTED", version
    # Not a version at all (e.g. a resourceVersion): the caller's mistake, stated by us, not by the apiserver.
    for version in ["0", current.deployment_resource_version, "x"]:
        code, message = _set(scalekeeper_server, transport, namespace, version)
        assert code == "INVALID_ARGUMENT", version
        assert "not a desired_version" in message


def _set(server: ServerProcess, transport: str, namespace: str, expected: str) -> tuple[str, str]:
    if transport == "http":
        path = f"/v1/namespaces/{namespace}/deployments/{NAME}/replicas"
        result = server.http("writer").put(path, {"replicas": 7, "expectedDesiredVersion": expected})
        return str(result.body["code"]), str(result.body["message"])
    request = pb.SetReplicasRequest(namespace=namespace, name=NAME, replicas=7, expected_desired_version=expected)
    try:
        server.stub("writer").SetReplicas(request, timeout=10)
    except grpc.RpcError as error:
        return str(error.code().name), str(error.details())
    return "OK", ""
