"""A bug inside the server is answered INTERNAL/500 with a correlation id, on both transports, over loopback.

The real transports serve a service whose handler fails the way a bug does
(an exception nothing maps). Retry policies treat UNAVAILABLE/503 as "try
again"; a deterministic failure must not invite that, and the caller gets an
id to report rather than internals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import TestServer

from scalekeeper.transport import grpc_api, http_api
from scalekeeper.v1 import replicas_pb2 as pb

SECRET = "/var/run/secrets/token=abc"


class _BuggyService:
    async def get_replicas(self, *_: Any) -> pb.Replicas:
        raise KeyError(SECRET)


def _logged_id(caplog: pytest.LogCaptureFixture, message: str) -> str:
    [correlation_id] = re.findall(r"[0-9a-f]{16}", message)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [getattr(r, "correlation_id", None) for r in errors] == [correlation_id]
    assert errors[0].exc_info is not None
    return correlation_id


async def test_http_answers_a_bug_with_500_internal(caplog: pytest.LogCaptureFixture) -> None:
    server = TestServer(http_api.build_app(_BuggyService()))  # type: ignore[arg-type]
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(server.make_url("/v1/namespaces/ns/deployments/web/replicas"))
            body = await response.json()
    finally:
        await server.close()
    assert (response.status, body["code"]) == (500, "INTERNAL")
    assert SECRET not in body["message"]
    _logged_id(caplog, body["message"])


async def test_grpc_answers_a_bug_with_internal(caplog: pytest.LogCaptureFixture) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc_api._replica_handlers(grpc_api.ReplicaServicer(_BuggyService())),))  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = grpc_api.replicas_pb2_grpc.ReplicaServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetReplicas(pb.GetReplicasRequest(namespace="ns", name="web"), timeout=10)
    finally:
        await server.stop(0)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert SECRET not in (caught.value.details() or "")
    _logged_id(caplog, caught.value.details() or "")
