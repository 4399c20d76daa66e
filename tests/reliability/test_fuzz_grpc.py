"""Property-based fuzzing of every RPC with random and hostile input, over gRPC.

The property: whatever a client with a valid certificate sends, the answer is
a client error or a success, never a server error (gRPC INTERNAL, UNKNOWN,
or UNAVAILABLE, which scalekeeper uses for its own bugs while ready), the
server never logs an unexpected error, and it stays up and ready.

Inputs (``fuzz_support.py``): arbitrary unicode, strings far past every length
limit, control and bidi characters, path separators, negative and
overflowing numbers (also varints wider than int32, which only a hand-made
protobuf can carry), malformed page tokens, undecodable bytes. The HTTP
routes are fuzzed by test_fuzz_http.py.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from fuzz_support import EXAMPLES, FUZZ, TARGET, identifiers, int32s, long_strings, page_tokens
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import CLIENT_ERROR_CODES
from server_harness import ServerProcess

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc


@pytest.fixture(scope="module")
def stub(fuzz_server: ServerProcess) -> replicas_pb2_grpc.ReplicaServiceStub:
    return fuzz_server.stub("writer")


@pytest.fixture(scope="module")
def channel(fuzz_server: ServerProcess) -> grpc.Channel:
    return fuzz_server.channel("writer")


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
    expected=st.one_of(st.none(), st.just(""), st.text(max_size=30), long_strings(["9", "x"], 100, 10_000)),
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
