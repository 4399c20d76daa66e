"""Many WatchReplicas streams while Deployments change (issue 14's "1,000 watchers" scenario).

``streams`` watchers (most on one of ``namespaces`` namespaces, ``cluster_wide``
on all namespaces) stay open while ``rate`` Deployments per second are scaled
through the apiserver. Reported: propagation from just before each PATCH to
each stream that must see it, GetReplicas under ghz at c=16 meanwhile, and the
server's event-loop lag histogram (``scalekeeper_event_loop_lag_seconds``,
sampled every 10 ms by the server itself) over the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from scalekeeper.kube.client import KubeClient
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import bench_scale
from scalekeeper_dev.bench_env import Certs, metric_sum
from scalekeeper_dev.bench_latency import Samples, scale_directly
from scalekeeper_dev.bench_load import LoadResult

NAMESPACE_PREFIX = "bench-watchers"
DEPLOYMENT = "app"
STREAMS_PER_CHANNEL = 100  # one HTTP/2 connection per hundred streams, as many clients would have
LAG_METRIC = "scalekeeper_event_loop_lag_seconds"


def namespaces(count: int) -> list[str]:
    return [f"{NAMESPACE_PREFIX}-{i:03d}" for i in range(count)]


async def setup(kube: KubeClient, count: int) -> None:
    for namespace in namespaces(count):
        await bench_scale.create_namespace(kube, namespace)
    await bench_scale.create_many(kube, [(namespace, DEPLOYMENT) for namespace in namespaces(count)])


@dataclass
class WatchersResult:
    streams: int
    namespaces: int
    cluster_wide: int
    rate: float
    seconds: float
    changes: int = 0
    propagation: Samples = field(default_factory=Samples)
    missing: int = 0  # deliveries that never arrived
    aborted: int = 0  # streams that ended before the run did
    gets: LoadResult | None = None
    lag_samples: int = 0
    lag_over_20ms: int = 0
    lag_worst_bucket: str = ""


class _Expectations:
    """(namespace, replicas) -> when the change was sent and how many streams still have to see it."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], tuple[float, int]] = {}
        self.samples = Samples()
        self.outstanding = 0
        self.all_seen = asyncio.Event()

    def expect(self, namespace: str, replicas: int, streams: int) -> None:
        self.sent[(namespace, replicas)] = (time.perf_counter(), streams)
        self.outstanding += streams
        self.all_seen.clear()

    def arrived(self, namespace: str, replicas: int) -> None:
        entry = self.sent.get((namespace, replicas))
        if entry is None:
            return
        started, left = entry
        self.samples.add(time.perf_counter() - started)
        self.sent[(namespace, replicas)] = (started, left - 1)
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.all_seen.set()


async def _watch(
    stub: replicas_pb2_grpc.ReplicaServiceStub, namespace: str, ready: asyncio.Event, expect: _Expectations
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


def _lag(samples: dict) -> tuple[float, float, str]:  # type: ignore[type-arg]
    count = metric_sum(samples, f"{LAG_METRIC}_count")
    within = {
        float(dict(labels)["le"]): value for (name, labels), value in samples.items() if name == f"{LAG_METRIC}_bucket"
    }
    return count, within.get(0.02, 0.0), repr(within)


async def run(
    target: str,
    certs: Certs,
    kube: KubeClient,
    server_metrics: Callable[[], dict],  # type: ignore[type-arg]
    ghz_get: Callable[[str], Awaitable[LoadResult]],
    *,
    streams: int = 1000,
    namespace_count: int = 100,
    cluster_wide: int = 100,
    rate: float = 20.0,
    seconds: float = 20.0,
) -> WatchersResult:
    result = WatchersResult(streams, namespace_count, cluster_wide, rate, seconds)
    scopes = [""] * cluster_wide + [
        namespaces(namespace_count)[i % namespace_count] for i in range(streams - cluster_wide)
    ]
    channels = [
        grpc.aio.secure_channel(target, certs.grpc_credentials("reader"))
        for _ in range(-(-streams // STREAMS_PER_CHANNEL))
    ]
    expect = _Expectations()
    readies = [asyncio.Event() for _ in scopes]
    tasks = [
        asyncio.create_task(
            _watch(replicas_pb2_grpc.ReplicaServiceStub(channels[i // STREAMS_PER_CHANNEL]), scope, readies[i], expect)
        )
        for i, scope in enumerate(scopes)
    ]
    watchers_per_namespace = {ns: scopes.count(ns) + cluster_wide for ns in namespaces(namespace_count)}
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
        lag_before = _lag(await asyncio.to_thread(server_metrics))
        gets = asyncio.create_task(ghz_get(f"{int(seconds)}s"))
        replicas = 1
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            replicas += 1
            for i in range(int(rate)):
                namespace = namespaces(namespace_count)[(result.changes + i) % namespace_count]
                expect.expect(namespace, replicas, watchers_per_namespace[namespace])
                await scale_directly(kube, namespace, DEPLOYMENT, replicas)
            result.changes += int(rate)
            await asyncio.sleep(max(0.0, started + (replicas - 1) - time.perf_counter()))
        result.gets = await gets
        # Let the last changes arrive (bounded), then read the lag over the whole run.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(expect.all_seen.wait(), timeout=10)
        lag_after = _lag(await asyncio.to_thread(server_metrics))
        result.lag_samples = int(lag_after[0] - lag_before[0])
        result.lag_over_20ms = int((lag_after[0] - lag_after[1]) - (lag_before[0] - lag_before[1]))
        result.missing = sum(max(0, left) for _, left in expect.sent.values())
        result.propagation = expect.samples
        result.aborted = sum(1 for task in tasks if task.done())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    return result
