"""Inputs at the edges of the API, over the wire, against the real server and control plane.

Each case here was once answered wrongly: a body that scaled a Deployment to
0, a 503 "retry" for a client's mistake, a body refused because of an
expected version it could never match. Every bad input must get a clear 4xx
and change nothing. How the HTTP body is framed is covered by
test_api_edges_http_framing.py; the shared target: ``api_edges_support.py``.
"""

from __future__ import annotations

import base64

import grpc
import pytest
from api_edges_support import NAME, error_lines, scale_object
from google.protobuf.internal import encoder
from kubernetes import client
from server_harness import ServerProcess

from scalekeeper.v1 import replicas_pb2 as pb

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
    before = scale_object(admin_api, namespace)
    result = scalekeeper_server.http("writer").put(managed, raw=raw)
    assert (result.status, result.body["code"]) == (400, "INVALID_ARGUMENT"), (raw, result.body)
    after = scale_object(admin_api, namespace)
    assert after["spec"]["replicas"] == 2
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_a_grpc_set_without_replicas_changes_nothing(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        scalekeeper_server.stub("writer").SetReplicas(pb.SetReplicasRequest(namespace=namespace, name=NAME), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "replicas is required" in caught.value.details()
    assert scale_object(admin_api, namespace)["spec"]["replicas"] == 2


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
    errors_before = len(error_lines(scalekeeper_server))
    result = scalekeeper_server.http("writer").put(managed, raw=raw)
    assert (result.status, result.body["code"]) == (400, "INVALID_ARGUMENT"), result.body
    assert says in result.body["message"]
    assert len(error_lines(scalekeeper_server)) == errors_before


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
    assert scale_object(admin_api, namespace)["spec"]["replicas"] == 2


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
