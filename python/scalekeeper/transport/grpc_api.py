"""The gRPC API: ReplicaService over grpc.aio, plus health and reflection on the same port.

grpc.health.v1 reports what /readyz reports, so that a gRPC-native probe or
load balancer sees the same readiness; reflection lets ``grpcurl`` work
without the proto files. Only the v1alpha reflection service exists in
grpcio-reflection, and grpcurl falls back to it.

TLS: see ``scalekeeper.tls.policy`` for what grpcio can and cannot enforce
(no minimum-version setting, grpc/grpc#37305; ciphers via
GRPC_SSL_CIPHER_SUITES) and ``scalekeeper.tls.reloading`` for rotation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scalekeeper.service.authz import Identity
from scalekeeper.service.replicas import ReplicaService
from scalekeeper.tls.reloading import ReloadingCertificates, grpc_server_credentials
from scalekeeper.transport.accounting import CallRecord
from scalekeeper.transport.failures import invalid_argument
from scalekeeper.transport.identity import names_from_grpc_auth_context
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc

log = logging.getLogger(__name__)

TRANSPORT = "grpc"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReplicaService"].full_name
# How often the health service re-reads readiness; also what bounds its lag behind /readyz.
HEALTH_POLL_SECONDS = 0.5

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


def identity_of(context: grpc.aio.ServicerContext) -> Identity:
    return Identity(names=names_from_grpc_auth_context(context.auth_context()))


class _Undecodable:
    """Stands in for a request whose bytes are not the method's protobuf message.

    grpc's own deserializers raise before any servicer code runs, and grpc then
    answers UNKNOWN and logs an error: a client mistake reported as a server
    fault. Parsing leniently lets the servicer answer INVALID_ARGUMENT instead.
    """

    def __init__(self, message_type: type[Message]) -> None:
        self.type_name = message_type.DESCRIPTOR.full_name


def _lenient(message_type: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    def parse(data: bytes) -> Message | _Undecodable:
        try:
            return message_type.FromString(data)
        except DecodeError:
            return _Undecodable(message_type)

    return parse


def _decoded(request: Req | _Undecodable) -> Req:
    if isinstance(request, _Undecodable):
        raise invalid_argument(f"the request is not a valid {request.type_name} message")
    return request


class ReplicaServicer(replicas_pb2_grpc.ReplicaServiceServicer):
    """Adapts ReplicaService to gRPC: identity in, status codes out, every call accounted."""

    def __init__(self, service: ReplicaService) -> None:
        self._service = service

    async def _unary(
        self,
        method: str,
        request: Req,
        context: grpc.aio.ServicerContext,
        handler: Callable[[Identity, Req], Awaitable[Resp]],
    ) -> Resp:
        identity = identity_of(context)
        record = CallRecord(TRANSPORT, method, str(identity))
        try:
            response = await handler(identity, _decoded(request))
        except asyncio.CancelledError:
            record.finish("CANCELLED")
            raise
        except Exception as error:
            failure = record.fail(error)
        else:
            record.finish("OK")
            return response
        # Outside the try: abort() raises, and that must not be classified again.
        await context.abort(grpc.StatusCode[failure.code.name], failure.message)
        raise AssertionError("unreachable: abort() raises")

    async def GetReplicas(self, request: pb.GetReplicasRequest, context: grpc.aio.ServicerContext) -> pb.Replicas:
        return await self._unary("GetReplicas", request, context, self._service.get_replicas)

    async def SetReplicas(self, request: pb.SetReplicasRequest, context: grpc.aio.ServicerContext) -> pb.Replicas:
        return await self._unary("SetReplicas", request, context, self._service.set_replicas)

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeploymentsResponse:
        return await self._unary("ListDeployments", request, context, self._service.list_deployments)

    async def WatchReplicas(  # type: ignore[override]
        self, request: pb.WatchReplicasRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ReplicasEvent]:
        identity = identity_of(context)
        record = CallRecord(TRANSPORT, "WatchReplicas", str(identity))
        events: AsyncIterator[pb.ReplicasEvent] | None = None
        failure = None
        try:
            events = self._service.watch_replicas(identity, _decoded(request))
            async for event in events:
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away, or the drain period ran out.
            record.finish("CANCELLED")
            raise
        except Exception as error:
            failure = record.fail(error)
        else:
            # The service closed the stream (shutdown): end it with OK.
            record.finish("OK")
        finally:
            aclose = getattr(events, "aclose", None) if events is not None else None
            if aclose is not None:
                await aclose()
        if failure is not None:
            await context.abort(grpc.StatusCode[failure.code.name], failure.message)


class _HealthServicer(health.aio.HealthServicer):
    """grpc's servicer, brought up to date before each Check and Watch, so it never lags /readyz."""

    def __init__(self, refresh: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._refresh = refresh

    async def Check(self, request, context):  # type: ignore[no-untyped-def]
        await self._refresh()
        return await super().Check(request, context)

    async def Watch(self, request, context):  # type: ignore[no-untyped-def]
        await self._refresh()
        return await super().Watch(request, context)


class HealthReporter:
    """Keeps grpc.health.v1 in line with a readiness function: on every Check/Watch, and by
    polling for the benefit of open Watch streams."""

    def __init__(self, is_ready: Callable[[], bool]) -> None:
        self.servicer = _HealthServicer(self.update)
        self._is_ready = is_ready
        self._last: bool | None = None
        self._task: asyncio.Task[None] | None = None

    async def update(self) -> None:
        ready = self._is_ready()
        if ready == self._last:
            return
        self._last = ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.servicer.set(service, status)

    async def _run(self) -> None:
        while True:
            try:
                await self.update()
            except Exception:
                log.exception("updating grpc health failed")
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def start(self) -> None:
        await self.update()
        self._task = asyncio.create_task(self._run(), name="grpc-health")

    async def shutdown(self) -> None:
        """NOT_SERVING for good: further readiness changes are ignored."""
        if self._task is not None:
            self._task.cancel()
        await self.servicer.enter_graceful_shutdown()


SERVER_OPTIONS = (
    # Reap dead clients of long watch streams; allow clients' keepalive pings.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 1 << 20),
)


def _replica_handlers(servicer: ReplicaServicer) -> grpc.GenericRpcHandler:
    """The generated registration, but with lenient request parsing (see ``_Undecodable``)."""
    unary = {
        "GetReplicas": (servicer.GetReplicas, pb.GetReplicasRequest, pb.Replicas),
        "SetReplicas": (servicer.SetReplicas, pb.SetReplicasRequest, pb.Replicas),
        "ListDeployments": (servicer.ListDeployments, pb.ListDeploymentsRequest, pb.ListDeploymentsResponse),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=_lenient(request), response_serializer=response.SerializeToString
        )
        for name, (behaviour, request, response) in unary.items()
    }
    handlers["WatchReplicas"] = grpc.unary_stream_rpc_method_handler(
        servicer.WatchReplicas,
        request_deserializer=_lenient(pb.WatchReplicasRequest),
        response_serializer=pb.ReplicasEvent.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def build_server(
    service: ReplicaService,
    certificates: ReloadingCertificates,
    address: str,
    is_ready: Callable[[], bool],
) -> tuple[grpc.aio.Server, HealthReporter, int]:
    """The gRPC server, bound (not started) on ``address``; returns it, its health reporter and the port."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((_replica_handlers(ReplicaServicer(service)),))
    health_reporter = HealthReporter(is_ready)
    health_pb2_grpc.add_HealthServicer_to_server(health_reporter.servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_secure_port(address, grpc_server_credentials(certificates))
    if port == 0:
        raise OSError(f"cannot listen on {address} for gRPC")
    return server, health_reporter, port
