"""Every RPC, happy and unhappy, on BOTH transports of the real server.

One test body runs against gRPC and against HTTP/JSON through a thin adapter
(``transport_clients.py``) that reduces each answer to (code, JSON body), so
the two transports are held to the same behaviour by construction.
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from kubernetes import client
from server_harness import READER, WRITER, ServerProcess, eventually
from transport_clients import Api, HttpApi, wait_visible

from scalekeeper.v1 import replicas_pb2 as pb


def test_get_replicas(writer: Api, reader: Api, namespace: str, deployments: Callable[..., list[str]]) -> None:
    deployments(namespace, ["web"], replicas=3)
    outcome = wait_visible(reader, namespace, "web")
    body = outcome.body
    assert body["namespace"] == namespace
    assert body["name"] == "web"
    assert body["specReplicas"] == 3
    assert body["desiredReplicas"] == 3
    assert body["managed"] is False
    assert body["desiredVersion"] == ""
    assert body["deploymentResourceVersion"]
    assert writer.get(namespace, "web").code == "OK"


def test_set_replicas_then_get(
    writer: Api, namespace: str, deployments: Callable[..., list[str]], admin_api: Any
) -> None:
    deployments(namespace, ["api"], replicas=1)
    wait_visible(writer, namespace, "api")
    outcome = writer.set(namespace, "api", 4)
    assert outcome.code == "OK", outcome
    assert outcome.body["desiredReplicas"] == 4
    assert outcome.body["managed"] is True
    assert outcome.body["desiredVersion"]
    stored = client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", "api"
    )
    assert stored["spec"]["replicas"] == 4
    eventually(
        lambda: writer.get(namespace, "api").body.get("desiredReplicas") == 4, "Get to see the new desired count"
    )

    # Optimistic concurrency: the version just returned works once, then is stale.
    version = writer.get(namespace, "api").body["desiredVersion"]
    assert writer.set(namespace, "api", 5, expected=version).code == "OK"
    assert writer.set(namespace, "api", 6, expected=version).code == "ABORTED"


def test_list_deployments_pages_through_many(
    reader: Api, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    names = sorted(deployments(namespace, [f"d{i:02d}" for i in range(23)]))
    eventually(lambda: len(reader.list(namespace, page_size=100).body.get("deployments", [])) == 23, "all 23 cached")
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        outcome = reader.list(namespace, page_size=5, page_token=token)
        assert outcome.code == "OK", outcome
        page = outcome.body["deployments"]
        assert len(page) <= 5
        assert all(d["namespace"] == namespace for d in page)
        seen += [d["name"] for d in page]
        pages += 1
        token = outcome.body["nextPageToken"]
        if not token:
            break
    assert seen == names
    assert pages == 5


def test_list_without_namespace_includes_ours(
    reader: Api, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    deployments(namespace, ["one"])
    wait_visible(reader, namespace, "one")
    outcome = reader.list(page_size=1000)
    assert outcome.code == "OK"
    assert (namespace, "one") in {(d["namespace"], d["name"]) for d in outcome.body["deployments"]}


def test_reader_cannot_set(
    reader: Api, namespace: str, deployments: Callable[..., list[str]], scalekeeper_server: ServerProcess
) -> None:
    deployments(namespace, ["locked"])
    wait_visible(reader, namespace, "locked")
    outcome = reader.set(namespace, "locked", 2)
    assert outcome.code == "PERMISSION_DENIED"
    assert READER in outcome.message

    def denial_logged() -> bool:
        return any(
            r.get("msg") == "call" and r.get("code") == "PERMISSION_DENIED" and r.get("identity") == READER
            for r in scalekeeper_server.log_records()
        )

    eventually(denial_logged, "the denial in the access log")


def test_client_without_role_is_denied(api_for: Callable[[str], Api], namespace: str) -> None:
    stranger = api_for("stranger")
    assert stranger.get(namespace, "anything").code == "PERMISSION_DENIED"
    assert stranger.list().code == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("ns", "name"),
    [("Bad_NS", "web"), ("default", "UPPER"), ("default", "x" * 300), ("", "web"), ("default", "")],
)
def test_invalid_names(writer: Api, ns: str, name: str) -> None:
    # On HTTP an empty path segment matches no route at all: 404 with a JSON error.
    expected = "NOT_FOUND" if isinstance(writer, HttpApi) and (not ns or not name) else "INVALID_ARGUMENT"
    assert writer.get(ns, name).code == expected
    assert writer.set(ns, name, 1).code == expected


@pytest.mark.parametrize("replicas", [-1, 1001, 2**31])
def test_replicas_out_of_range(writer: Api, namespace: str, replicas: int) -> None:
    outcome = writer.set(namespace, "whatever", replicas)
    assert outcome.code == "INVALID_ARGUMENT", outcome


def test_unknown_deployment(writer: Api, namespace: str) -> None:
    outcome = writer.get(namespace, "does-not-exist")
    assert outcome.code == "NOT_FOUND"
    assert "does-not-exist" in outcome.message
    assert writer.set(namespace, "does-not-exist", 1).code == "NOT_FOUND"


@pytest.mark.parametrize("token", ["garbage", "!!!", "eyJmb28iOiAiYmFyIn0"])
def test_bad_page_token(reader: Api, token: str) -> None:
    assert reader.list(page_token=token).code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("size", [-1, 1001])
def test_bad_page_size(reader: Api, size: int) -> None:
    assert reader.list(page_size=size).code == "INVALID_ARGUMENT"


def test_change_made_directly_shows_in_get_and_watch(
    reader: Api, namespace: str, deployments: Callable[..., list[str]], admin_api: Any
) -> None:
    deployments(namespace, ["live"], replicas=1)
    wait_visible(reader, namespace, "live")
    events = reader.watch(namespace)
    first = next(events)
    assert first["type"] == "ADDED"
    assert first["replicas"]["name"] == "live"
    assert first["replicas"]["specReplicas"] == 1

    client.AppsV1Api(admin_api).patch_namespaced_deployment("live", namespace, {"spec": {"replicas": 7}})
    for event in events:
        if event["type"] == "MODIFIED" and event["replicas"]["specReplicas"] == 7:
            break
    events.close()
    assert reader.get(namespace, "live").body["specReplicas"] == 7

    client.AppsV1Api(admin_api).delete_namespaced_deployment("live", namespace)
    eventually(lambda: reader.get(namespace, "live").code == "NOT_FOUND", "the deletion to reach the cache")


def test_watch_sees_a_new_deployment(reader: Api, namespace: str, deployments: Callable[..., list[str]]) -> None:
    deployments(namespace, ["first"])
    wait_visible(reader, namespace, "first")
    events = reader.watch(namespace)
    assert next(events)["replicas"]["name"] == "first"
    deployments(namespace, ["second"])
    event = next(events)
    events.close()
    assert event["type"] == "ADDED"
    assert event["replicas"]["name"] == "second"


def test_reader_cannot_watch_without_role(api_for: Callable[[str], Api], namespace: str) -> None:
    stranger = api_for("stranger")
    with pytest.raises((grpc.RpcError, AssertionError)) as caught:
        next(stranger.watch(namespace))
    if isinstance(caught.value, grpc.RpcError):
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert "403" in str(caught.value) or "PERMISSION_DENIED" in str(caught.value)


# -- HTTP-only details -------------------------------------------------------------------------------------


def test_http_bad_bodies(scalekeeper_server: ServerProcess, namespace: str) -> None:
    http = scalekeeper_server.http("writer")
    path = f"/v1/namespaces/{namespace}/deployments/x/replicas"
    cases = [
        b"not json",
        b"[1, 2]",
        b'{"replicas": "three"}',
        b'{"replicas": 2.5}',
        b'{"replicas": true}',
        b'{"replicas": 2, "extra": 1}',
        b"{}",
    ]
    for raw in cases:
        result = http.put(path, raw=raw)
        assert result.status == 400, (raw[:40], result.body)
        assert result.body["code"] == "INVALID_ARGUMENT"


def test_http_unknown_route_and_method(scalekeeper_server: ServerProcess) -> None:
    http = scalekeeper_server.http("writer")
    result = http.get("/v1/nothing/here")
    assert result.status == 404
    assert result.body["code"] == "NOT_FOUND"
    result = http.request("DELETE", "/v1/namespaces/default/deployments/x/replicas")
    assert result.status == 405
    assert set(result.body) == {"code", "message"}


def test_http_page_size_not_a_number(scalekeeper_server: ServerProcess) -> None:
    result = scalekeeper_server.http("reader").get("/v1/deployments?page_size=ten")
    assert result.status == 400
    assert result.body["code"] == "INVALID_ARGUMENT"


def test_server_survives_garbage(scalekeeper_server: ServerProcess) -> None:
    """Malformed HTTP and bogus gRPC frames never take the process down."""
    connection = scalekeeper_server.http("writer").connection()
    connection.connect()
    assert connection.sock is not None
    connection.sock.sendall(b"\x00\x01garbage\r\n\r\n")
    with contextlib.suppress(OSError, http.client.HTTPException):
        connection.sock.recv(1024)
    connection.close()
    channel = scalekeeper_server.channel("writer")
    raw = channel.unary_unary("/scalekeeper.v1.ReplicaService/GetReplicas")
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff garbage", timeout=10)
    # A client's mistake, answered as one (grpcio's own deserializer would say UNKNOWN).
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "GetReplicasRequest" in caught.value.details()
    assert scalekeeper_server.returncode is None
    assert scalekeeper_server.health_get("/readyz")[0] == 200


def test_writer_identity_in_access_log(scalekeeper_server: ServerProcess, namespace: str, deployments) -> None:
    # Writes are logged at INFO (successful reads only at DEBUG: the metrics count them).
    deployments(namespace, ["logged"])
    stub = scalekeeper_server.stub("writer")
    eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="logged")), "the Deployment")
    stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="logged", replicas=2), timeout=10)

    def logged() -> bool:
        return any(
            r.get("method") == "SetReplicas"
            and r.get("identity") == WRITER
            and r.get("code") == "OK"
            and isinstance(r.get("latency_ms"), float | int)
            for r in scalekeeper_server.log_records()
        )

    eventually(logged, "the access-log line")
