"""The HTTP/JSON API (aiohttp): the same ReplicaService as gRPC, for curl and scripts.

Routes (JSON is protobuf's canonical JSON mapping, camelCase):
  GET /v1/deployments?namespace=&page_size=&page_token=          ListDeployments
  GET /v1/namespaces/{namespace}/deployments/{name}/replicas     GetReplicas
  PUT /v1/namespaces/{namespace}/deployments/{name}/replicas     SetReplicas
      body {"replicas": N, "expectedDesiredVersion": "...", "takeOwnership": true}
  GET /v1/watch/deployments?namespace=                           WatchReplicas,
      newline-delimited JSON events; an error after the stream started is sent
      as a last line {"error": {"code": ..., "message": ...}}.
Errors: {"code": "NOT_FOUND", "message": "..."} with the HTTP status of ``errors.Code``.

mTLS with TLS 1.3 only (``tls.policy``), certificates reloaded on change
(``tls.reloading``); the identity is the verified client certificate's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from scalekeeper.errors import Code
from scalekeeper.service.authz import Identity
from scalekeeper.service.replicas import ReplicaService
from scalekeeper.tls.reloading import ReloadingCertificates, ReloadingSSLContext
from scalekeeper.transport.accounting import CallRecord
from scalekeeper.transport.failures import Failure, failure_for
from scalekeeper.transport.http_requests import (
    MAX_BODY_BYTES,
    int32_parameter,
    parse_json,
    query,
    read_body,
    set_request,
)
from scalekeeper.transport.identity import names_from_peercert
from scalekeeper.v1 import replicas_pb2 as pb

log = logging.getLogger(__name__)

TRANSPORT = "http"
# How long the watch handler waits for the service to accept or refuse the
# stream before sending headers: refusals (403, 400, 503) happen synchronously,
# so one loop turn is enough; an accepted stream may stay silent for long.
WATCH_HEADER_WAIT_SECONDS = 0.05


# The caller's identity, attached by the middleware before any handler runs.
IDENTITY = web.RequestKey("identity", Identity)


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def error_response(failure: Failure) -> web.Response:
    return web.json_response({"code": failure.code.name, "message": failure.message}, status=failure.http_status)


def identity_of(request: web.Request) -> Identity:
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    return Identity(names=names_from_peercert(peercert))


class HttpApi:
    def __init__(self, service: ReplicaService) -> None:
        self._service = service

    async def _call(
        self,
        request: web.Request,
        method: str,
        build: Callable[[], Awaitable[Message]],
    ) -> web.Response:
        record = CallRecord(TRANSPORT, method, str(request[IDENTITY]))
        try:
            response = await build()
        except asyncio.CancelledError:
            record.finish("CANCELLED")
            raise
        except ConnectionResetError:
            # The client hung up mid-request (e.g. mid-body): no one to answer, and not our error. aiohttp would
            # log a re-raised one at ERROR; the answer returned instead is dropped quietly on the closed connection.
            record.finish("CANCELLED")
            return web.Response(status=499, reason="Client Closed Request")
        except Exception as error:
            return error_response(record.fail(error))
        record.finish("OK")
        return web.json_response(to_json(response))

    async def list_deployments(self, request: web.Request) -> web.Response:
        async def build() -> Message:
            parameters = query(request, ("namespace", "page_size", "page_token"))
            message = pb.ListDeploymentsRequest(
                namespace=parameters.get("namespace", ""),
                page_size=int32_parameter(parameters, "page_size"),
                page_token=parameters.get("page_token", ""),
            )
            return await self._service.list_deployments(request[IDENTITY], message)

        return await self._call(request, "ListDeployments", build)

    async def get_replicas(self, request: web.Request) -> web.Response:
        async def build() -> Message:
            query(request, ())
            message = pb.GetReplicasRequest(namespace=request.match_info["namespace"], name=request.match_info["name"])
            return await self._service.get_replicas(request[IDENTITY], message)

        return await self._call(request, "GetReplicas", build)

    async def set_replicas(self, request: web.Request) -> web.Response:
        async def build() -> Message:
            query(request, ())
            body = parse_json(await read_body(request))
            message = set_request(request.match_info["namespace"], request.match_info["name"], body)
            return await self._service.set_replicas(request[IDENTITY], message)

        return await self._call(request, "SetReplicas", build)

    async def watch(self, request: web.Request) -> web.StreamResponse:
        record = CallRecord(TRANSPORT, "WatchReplicas", str(request[IDENTITY]))
        message = pb.WatchReplicasRequest(namespace=request.query.get("namespace", ""))
        events = self._service.watch_replicas(request[IDENTITY], message)
        first: asyncio.Future[pb.ReplicasEvent] = asyncio.ensure_future(anext(events))
        response: web.StreamResponse | None = None
        try:
            # Refusals surface here, while a proper status line can still be sent.
            await asyncio.wait({first}, timeout=WATCH_HEADER_WAIT_SECONDS)
            if first.done() and first.exception() is not None and not isinstance(first.exception(), StopAsyncIteration):
                return error_response(record.fail(first.exception()))  # type: ignore[arg-type]
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
            await response.prepare(request)
            with contextlib.suppress(StopAsyncIteration):
                await response.write(_line(to_json(await first)))
                async for event in events:
                    await response.write(_line(to_json(event)))
            record.finish("OK")
        except (asyncio.CancelledError, ConnectionResetError):
            record.finish("CANCELLED")
            raise
        except Exception as error:
            failure = record.fail(error)
            if response is None:
                return error_response(failure)
            with contextlib.suppress(ConnectionResetError):
                await response.write(_line({"error": {"code": failure.code.name, "message": failure.message}}))
        finally:
            if not first.done():
                first.cancel()
                # The generator cannot be closed while that step still runs in it.
                await asyncio.wait({first})
            await events.aclose()  # type: ignore[attr-defined]
        await response.write_eof()
        return response


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


@web.middleware
async def _identity_and_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Attach the caller's identity; turn routing errors and stray exceptions into JSON errors."""
    request[IDENTITY] = identity_of(request)
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        # 404 for unknown paths, 405 for wrong methods: same JSON shape as API errors.
        code = Code.NOT_FOUND.name if error.status == 404 else Code.INVALID_ARGUMENT.name
        return web.json_response(
            {"code": code, "message": f"{request.method} {request.path}: {error.reason}"},
            status=error.status,
            headers={k: v for k, v in error.headers.items() if k == "Allow"},
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as error:
        # Handlers answer their own failures; this is a bug outside them (e.g. in routing).
        identity = str(request.get(IDENTITY, ""))
        return error_response(failure_for(error, transport=TRANSPORT, method=request.path, identity=identity))


def build_app(service: ReplicaService) -> web.Application:
    app = web.Application(middlewares=[_identity_and_errors], client_max_size=MAX_BODY_BYTES)
    api = HttpApi(service)
    app.router.add_get("/v1/deployments", api.list_deployments, allow_head=False)
    app.router.add_get("/v1/namespaces/{namespace}/deployments/{name}/replicas", api.get_replicas, allow_head=False)
    app.router.add_put("/v1/namespaces/{namespace}/deployments/{name}/replicas", api.set_replicas)
    app.router.add_get("/v1/watch/deployments", api.watch, allow_head=False)
    return app


async def start_server(
    service: ReplicaService, certificates: ReloadingCertificates, host: str, port: int, drain_seconds: float
) -> web.AppRunner:
    """Serve the API with mTLS on host:port; ``runner.cleanup()`` stops it, draining for ``drain_seconds``."""
    runner = web.AppRunner(build_app(service), shutdown_timeout=drain_seconds, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ReloadingSSLContext(certificates), reuse_address=True)
    await site.start()
    return runner
