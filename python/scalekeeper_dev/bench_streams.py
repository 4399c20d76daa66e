"""The client side of ``make bench`` section 6: many WatchReplicas streams, and what each change must reach.

Kept apart from ``bench_watchers`` (the scenario and its report) because the
same streams are opened twice: against scalekeeper, and against the bare
grpc.aio server's canned stream for the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from scalekeeper.kube.client import KubeClient
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev.bench_env import Certs
from scalekeeper_dev.bench_latency import Samples, scale_directly

STREAMS_PER_CHANNEL = 100  # one HTTP/2 connection per hundred streams, as many clients would have
DEPLOYMENT = "app"


class Expectations:
    """(namespace, replicas) -> when the change was sent and how many streams still have to see it."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], tuple[float, int]] = {}
        self.answered: dict[tuple[str, int], float] = {}
        self.samples = Samples()
        self.after_write = Samples()
        self.outstanding = 0
        self.all_seen = asyncio.Event()

    async def send(self, kube: KubeClient, namespace: str, replicas: int) -> None:
        await scale_directly(kube, namespace, DEPLOYMENT, replicas)
        self.answered[(namespace, replicas)] = time.perf_counter()

    def expect(self, namespace: str, replicas: int, streams: int) -> None:
        self.sent[(namespace, replicas)] = (time.perf_counter(), streams)
        self.outstanding += streams
        self.all_seen.clear()

    def arrived(self, namespace: str, replicas: int) -> None:
        entry = self.sent.get((namespace, replicas))
        if entry is None:
            return
        started, left = entry
        now = time.perf_counter()
        self.samples.add(now - started)
        answered = self.answered.get((namespace, replicas))
        self.after_write.add(max(0.0, now - answered) if answered is not None else 0.0)
        self.sent[(namespace, replicas)] = (started, left - 1)
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.all_seen.set()

    def missing(self) -> int:
        """Deliveries that never arrived."""
        return sum(max(0, left) for _, left in self.sent.values())


async def _watch(
    stub: replicas_pb2_grpc.ReplicaServiceStub, namespace: str, ready: asyncio.Event, expect: Expectations
) -> bool:
    """Follow one stream; True if it ended on its own (not cancelled)."""
    try:
        async for event in stub.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace)):
            ready.set()
            if event.type == pb.ReplicasEvent.MODIFIED:
                expect.arrived(event.replicas.namespace, event.replicas.spec_replicas)
    except grpc.aio.AioRpcError as error:
        return error.code() != grpc.StatusCode.CANCELLED
    return True


@contextlib.asynccontextmanager
async def open_streams(
    target: str, certs: Certs, scopes: list[str], expect: Expectations
) -> AsyncIterator[list[asyncio.Task[bool]]]:
    """A stream per scope (a namespace, or "" for all), each past its first event; cancelled on leaving.

    Yields the streams' tasks: one that is done ended before it was cancelled.
    """
    channels = [
        grpc.aio.secure_channel(target, certs.grpc_credentials("reader"))
        for _ in range(-(-len(scopes) // STREAMS_PER_CHANNEL))
    ]
    readies = [asyncio.Event() for _ in scopes]
    tasks = [
        asyncio.create_task(
            _watch(replicas_pb2_grpc.ReplicaServiceStub(channels[i // STREAMS_PER_CHANNEL]), scope, readies[i], expect)
        )
        for i, scope in enumerate(scopes)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), timeout=120)
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
