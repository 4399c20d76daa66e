"""A bare grpc.aio server: the floor that scalekeeper's read latency is compared with in ``make bench``.

It listens with exactly scalekeeper's TLS setup (the cipher pin of
``scalekeeper.tls.policy``, mTLS through the same reloading credentials of
``scalekeeper.tls.reloading``) and the same grpc.aio runtime, but its one
handler does no work: it answers every ReplicaService method with a response
serialized once at start-up. What remains is the cost of grpcio itself
(HTTP/2, TLS, the Python/Core hop of grpc.aio), so scalekeeper's throughput
as a fraction of this server's is what the service layer, the cache and the
authorization cost on top.

The canned responses have the shapes of real ones (a Replicas message, and a
page of ``--page-size`` of them for ListDeployments), so the bytes on the
wire are comparable; requests are never deserialized (raw bytes in), which
makes this a slight over-estimate of what any protobuf servicer could do.

With ``--watch-rate N`` it also serves a canned WatchReplicas: one event when
a stream opens, then one each time its namespace's turn comes, N turns a
second round the namespaces that streams asked for; every all-namespace
stream gets every turn's event. That is the delivery pattern of ``make bench``
section 6 without any of scalekeeper's work, and so the floor of what its
streams cost the unary calls beside them.

    python -m scalekeeper_dev.bare_server --port 9443 --tls-cert s.crt --tls-key s.key --tls-client-ca ca.crt
"""

from __future__ import annotations

# Before grpc is imported, as in scalekeeper's own __main__.
from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import AsyncIterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402

from scalekeeper.tls.reloading import CertificateFiles, ReloadingCertificates  # noqa: E402
from scalekeeper.transport.grpc_api import SERVER_OPTIONS  # noqa: E402
from scalekeeper.transport.grpc_tls import grpc_server_credentials  # noqa: E402
from scalekeeper.v1 import replicas_pb2 as pb  # noqa: E402

SERVICE = "scalekeeper.v1.ReplicaService"


def _replicas(index: int) -> pb.Replicas:
    return pb.Replicas(
        namespace="bench",
        name=f"deploy-{index:05d}",
        desired_replicas=3,
        spec_replicas=3,
        ready_replicas=3,
        available_replicas=3,
        deployment_resource_version=str(100_000 + index),
    )


def canned_responses(page_size: int) -> dict[str, bytes]:
    """Serialized responses by method name, built once."""
    page = pb.ListDeploymentsResponse(deployments=[_replicas(i) for i in range(page_size)], next_page_token="x" * 24)
    return {
        "GetReplicas": _replicas(0).SerializeToString(),
        "SetReplicas": _replicas(0).SerializeToString(),
        "ListDeployments": page.SerializeToString(),
    }


class _Deliveries:
    """The canned WatchReplicas: streams wait by namespace ("" for all) and a ticker wakes them in turn."""

    def __init__(self) -> None:
        self._event = pb.ReplicasEvent(type=pb.ReplicasEvent.MODIFIED, replicas=_replicas(0)).SerializeToString()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._namespaces: list[str] = []  # in the order streams first asked for them

    async def watch(self, request: bytes, _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        namespace = pb.WatchReplicasRequest.FromString(request).namespace
        if namespace and namespace not in self._namespaces:
            self._namespaces.append(namespace)
        yield self._event
        loop = asyncio.get_running_loop()
        while True:
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(namespace, []).append(turn)
            await turn
            yield self._event

    async def tick_forever(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        start, ticks = loop.time(), 0
        while True:
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks / rate - loop.time()))
            due = ["", self._namespaces[ticks % len(self._namespaces)]] if self._namespaces else [""]
            for namespace in due:
                for turn in self._waiting.pop(namespace, []):
                    if not turn.done():  # a stream whose client left
                        turn.set_result(None)


class _NoOp(grpc.GenericRpcHandler):
    """One handler for every unary method of the service: return the canned bytes; and WatchReplicas if given."""

    def __init__(self, responses: dict[str, bytes], deliveries: _Deliveries | None = None) -> None:
        self._handlers = {}
        for method, payload in responses.items():
            self._handlers[f"/{SERVICE}/{method}"] = grpc.unary_unary_rpc_method_handler(self._answer(payload))
        if deliveries is not None:
            self._handlers[f"/{SERVICE}/WatchReplicas"] = grpc.unary_stream_rpc_method_handler(deliveries.watch)

    @staticmethod
    def _answer(payload: bytes):  # type: ignore[no-untyped-def]
        async def handler(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
            return payload

        return handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)


async def serve(
    address: str, files: CertificateFiles, page_size: int, watch_rate: float, ready_file: Path | None
) -> None:
    # The same server options and TLS as scalekeeper's, so only the handler differs.
    server = grpc.aio.server(options=SERVER_OPTIONS)
    deliveries = _Deliveries() if watch_rate > 0 else None
    server.add_generic_rpc_handlers((_NoOp(canned_responses(page_size), deliveries),))
    port = server.add_secure_port(address, grpc_server_credentials(ReloadingCertificates(files)))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    if ready_file is not None:
        await asyncio.to_thread(ready_file.write_text, f"{port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ticker = asyncio.create_task(deliveries.tick_forever(watch_rate)) if deliveries is not None else None
    await stop.wait()
    if ticker is not None:
        ticker.cancel()
    await server.stop(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scalekeeper_dev.bare_server", description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--tls-client-ca", type=Path, required=True)
    parser.add_argument("--page-size", type=int, default=100, help="Replicas per canned ListDeployments page")
    parser.add_argument("--watch-rate", type=float, default=0, help="serve WatchReplicas, this many turns a second")
    parser.add_argument("--ready-file", type=Path, help="written with the port once serving")
    args = parser.parse_args(argv)
    files = CertificateFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    asyncio.run(serve(f"{args.address}:{args.port}", files, args.page_size, args.watch_rate, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
