"""WatchReplicas over the wire: refusals before the stream, the stream cap, disconnects, and shutdown."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_harness import ServerProcess, StartServer, eventually

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc

pytestmark = pytest.mark.integration


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    status, text = server.health_get("/metrics")
    assert status == 200, text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def http_watch_status(server: ServerProcess, role: str, query: str) -> tuple[int, str, dict]:
    connection = server.http(role).connection(timeout=10)
    try:
        connection.request("GET", f"/v1/watch/deployments?{query}")
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("role", "query", "status", "code"),
    [
        ("stranger", "namespace=default", 403, "PERMISSION_DENIED"),
        ("reader", "namespace=Not_A_Namespace", 400, "INVALID_ARGUMENT"),
    ],
)
def test_http_watch_refusal_is_a_plain_error_response(
    scalekeeper_server: ServerProcess, role: str, query: str, status: int, code: str
) -> None:
    answer_status, content_type, body = http_watch_status(scalekeeper_server, role, query)
    assert (answer_status, body["code"]) == (status, code)
    assert content_type.startswith("application/json")


def test_streams_beyond_the_cap_get_resource_exhausted(start_server: StartServer, namespace: str) -> None:
    server = start_server("--max-watch-streams=2")
    reader = server.stub("reader")
    open_streams = [reader.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=60) for _ in range(2)]
    eventually(lambda: metric(server, "scalekeeper_watch_streams") == 2, "two streams open")
    with pytest.raises(grpc.RpcError) as refused:
        next(reader.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=10))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-watch-streams" in (refused.value.details() or "")
    status, _, body = http_watch_status(server, "reader", f"namespace={namespace}")
    assert (status, body["code"]) == (429, "RESOURCE_EXHAUSTED")
    # A slot freed is a slot usable again.
    open_streams[0].cancel()
    eventually(lambda: metric(server, "scalekeeper_watch_streams") == 1, "the cancelled stream released")
    again = reader.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=60)
    eventually(lambda: metric(server, "scalekeeper_watch_streams") == 2, "a new stream accepted")
    for stream in (open_streams[1], again):
        stream.cancel()


def test_http_watch_client_that_disconnects_is_released_at_once(
    scalekeeper_server: ServerProcess, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    deployments(namespace, ["watched"])
    in_flight_before = metric(scalekeeper_server, "scalekeeper_requests_in_flight", transport="http")
    connection = scalekeeper_server.http("reader").connection(timeout=30)
    connection.request("GET", f"/v1/watch/deployments?namespace={namespace}")
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.readline())["replicas"]["name"] == "watched"
    assert metric(scalekeeper_server, "scalekeeper_requests_in_flight", transport="http") == in_flight_before + 1
    connection.close()  # the client goes away without a word
    # Nothing changes in the namespace: the release must not wait for an event.
    eventually(
        lambda: metric(scalekeeper_server, "scalekeeper_requests_in_flight", transport="http") == in_flight_before,
        "the disconnected watch released",
        timeout=10,
    )
    assert not [r for r in scalekeeper_server.log_records() if r.get("level") == "error"]


def test_a_thousand_streams_end_promptly_on_shutdown(start_server: StartServer, namespace: str) -> None:
    drain = 60.0
    server = start_server(f"--drain-seconds={drain}")
    channel = server.channel("reader")
    stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
    streams = [stub.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=120) for _ in range(1000)]
    eventually(lambda: metric(server, "scalekeeper_watch_streams") == 1000, "1,000 streams open", timeout=60)
    ended: list[grpc.StatusCode] = []

    def drain_stream(stream: grpc.Future) -> None:
        for _event in stream:
            pass
        ended.append(stream.code())

    readers = [threading.Thread(target=drain_stream, args=(s,), daemon=True) for s in streams]
    for thread in readers:
        thread.start()
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    eventually(lambda: len(ended) == 1000, "every stream ended", timeout=drain / 2)
    assert set(ended) == {grpc.StatusCode.OK}
    assert server.wait_exit(timeout=drain / 2) == 0
    assert time.monotonic() - started < drain / 2, "the streams must not wait for the drain period"
    channel.close()
