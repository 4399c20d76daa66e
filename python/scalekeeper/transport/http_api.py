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
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
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
from scalekeeper.transport.identity import http_identity
from scalekeeper.v1 import replicas_pb2 as pb

log = logging.getLogger(__name__)

TRANSPORT = "http"


# The caller's identity, attached by the middleware before any handler runs.
IDENTITY = web.RequestKey("identity", Identity)


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def error_response(failure: Failure) -> web.Response:
    return web.json_response({"code": failure.code.name, "message": failure.message}, status=failure.http_status)


def identity_of(request: web.Request) -> Identity:
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    return http_identity(peercert)


class _EncodedReplies:
    """JSON of the shared, never-modified ``Replicas`` GetReplicas returns (one per object version), encoded once.

    Keyed by the message's id while holding the message itself, so that an id
    cannot be reused by another object while its entry lives.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[Message, bytes]] = OrderedDict()

    def body(self, message: Message) -> bytes:
        entry = self._entries.get(id(message))
        if entry is not None and entry[0] is message:
            self._entries.move_to_end(id(message))
            return entry[1]
        body = json.dumps(to_json(message), separators=(",", ":")).encode()
        self._entries[id(message)] = (message, body)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return body


class HttpApi:
    def __init__(self, service: ReplicaService) -> None:
        self._service = service
        self._replies = _EncodedReplies()

    async def _call(
        self,
        request: web.Request,
        method: str,
        build: Callable[[], Awaitable[Message]],
        *,
        shared_reply: bool = False,
    ) -> web.Response:
        """``shared_reply``: ``build`` returns a message shared across calls, whose JSON is worth keeping."""
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
        if shared_reply:
            return web.Response(body=self._replies.body(response), content_type="application/json")
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

        return await self._call(request, "GetReplicas", build, shared_reply=True)

    async def set_replicas(self, request: web.Request) -> web.Response:
        async def build() -> Message:
            query(request, ())
            body = parse_json(await read_body(request))
            message = set_request(request.match_info["namespace"], request.match_info["name"], body)
            return await self._service.set_replicas(request[IDENTITY], message)

        return await self._call(request, "SetReplicas", build)

    async def watch(self, request: web.Request) -> web.StreamResponse:
        """Validate, authorize and take a stream slot first, so that a refusal is a plain 4xx/5xx; then stream.

        A client that disconnects cancels this handler (the runner's
        ``handler_cancellation``) wherever it waits, so its stream is released
        at once rather than at the next event that fails to write.
        """
        record = CallRecord(TRANSPORT, "WatchReplicas", str(request[IDENTITY]))
        message = pb.WatchReplicasRequest(namespace=request.query.get("namespace", ""))
        try:
            stream = self._service.open_watch(request[IDENTITY], message)
        except Exception as error:
            return error_response(record.fail(error))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        with stream:
            try:
                await response.prepare(request)
                async with contextlib.aclosing(stream.changes()) as changes:
                    async for change in changes:
                        await response.write(_line(to_json(change.message)))
            except (asyncio.CancelledError, ConnectionResetError):
                log.debug("HTTP watch client went away", extra={"identity": record.identity})
                record.finish("CANCELLED")
                raise
            except Exception as error:
                failure = record.fail(error)
                with contextlib.suppress(ConnectionResetError):
                    await response.write(_line({"error": {"code": failure.code.name, "message": failure.message}}))
            else:
                record.finish("OK")
        with contextlib.suppress(ConnectionResetError):
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


class ClientFaultsAreNotErrors(logging.Filter):
    """Demote aiohttp's records of requests it refused as malformed (4xx) to DEBUG.

    aiohttp logs each of them at ERROR with a traceback, so any client could
    flood the log with "errors" that are its own; the 400 it got says enough.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def _quiet_client_faults() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientFaultsAreNotErrors) for f in server_log.filters):
        server_log.addFilter(ClientFaultsAreNotErrors())


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
    # handler_cancellation: a client that disconnects cancels its handler, as grpc
    # does; that is what releases an idle watch stream promptly.
    _quiet_client_faults()
    runner = web.AppRunner(
        build_app(service), shutdown_timeout=drain_seconds, access_log=None, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ReloadingSSLContext(certificates), reuse_address=True)
    await site.start()
    return runner
