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
from scalekeeper_dev.bench_env import Certs, Scalekeeper, metric_sum
from scalekeeper_dev.bench_latency import Samples, scale_directly
from scalekeeper_dev.bench_load import Ghz, LoadResult
from scalekeeper_dev.bench_report import Results, Target, cpu, get_messages, ghz_run, log, ms, table

TARGET_PROPAGATION_P99_MS = 100.0
TARGET_GET_P99_FACTOR = 1.5  # GetReplicas p99 at c=16 with the streams, against without
TARGET_LAG_MS = 20.0
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


def _lag(samples: dict) -> tuple[float, dict[float, float]]:  # type: ignore[type-arg]
    """(samples so far, cumulative count per bucket bound)."""
    count = metric_sum(samples, f"{LAG_METRIC}_count")
    buckets = {
        float(dict(labels)["le"]): value for (name, labels), value in samples.items() if name == f"{LAG_METRIC}_bucket"
    }
    return count, buckets


async def measure(
    results: Results, kube: KubeClient, ghz: Ghz, server: Scalekeeper, *, streams: int, namespaces: int
) -> None:
    log(f"6. {streams} WatchReplicas streams in {namespaces} namespaces while 20 Deployments change per second")
    await setup(kube, namespaces)

    async def gets(duration: str) -> LoadResult:
        load = {"concurrency": 16, "duration": duration, "data_name": "get-100"}
        return await ghz_run(ghz, server.target, "GetReplicas", get_messages(), server_pid=server.pid, **load)

    results.watchers = await run(
        server.target,
        ghz.certs,
        kube,
        server.metrics,
        gets,
        streams=streams,
        namespace_count=namespaces,
        cluster_wide=streams // 10,
    )


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
        started, second = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            # Each second, ``rate`` changes at once; every change a new count, so none is a no-op.
            batch = []
            for _ in range(int(rate)):
                result.changes += 1
                namespace = namespaces(namespace_count)[result.changes % namespace_count]
                replicas = result.changes + 1
                expect.expect(namespace, replicas, watchers_per_namespace[namespace])
                batch.append(scale_directly(kube, namespace, DEPLOYMENT, replicas))
            await asyncio.gather(*batch)
            second += 1
            await asyncio.sleep(max(0.0, started + second - time.perf_counter()))
        result.gets = await gets
        # Let the last changes arrive (bounded), then read the lag over the whole run.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(expect.all_seen.wait(), timeout=10)
        lag_after = _lag(await asyncio.to_thread(server_metrics))
        (count_before, before), (count_after, after) = lag_before, lag_after
        result.lag_samples = int(count_after - count_before)
        within = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
        result.lag_over_20ms = int(result.lag_samples - within.get(0.02, 0.0))
        reached = min((b for b, n in within.items() if n >= result.lag_samples), default=float("inf"))
        result.lag_worst_bucket = f"<= {reached * 1000:.0f} ms" if reached != float("inf") else "> 5 s"
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


def targets(results: Results) -> list[Target]:
    w = results.watchers
    if w is None:
        return []
    n = f"{w.streams:,} streams"
    p99 = w.propagation.p99
    found = [
        Target(
            f"{n}: propagation p99",
            f"< {TARGET_PROPAGATION_P99_MS:.0f} ms",
            ms(p99),
            p99 < TARGET_PROPAGATION_P99_MS and not w.missing,
        ),
        Target(
            f"{n}: event-loop lag",
            f"never > {TARGET_LAG_MS:.0f} ms",
            f"{w.lag_over_20ms:,} of {w.lag_samples:,} samples over",
            w.lag_over_20ms == 0,
        ),
    ]
    without = results.get_replicas(16)[0]
    if w.gets is not None and without is not None and without.p99_ms:
        factor = w.gets.p99_ms / without.p99_ms
        found.append(
            Target(
                f"{n}: GetReplicas p99 c=16, against without",
                f"<= {TARGET_GET_P99_FACTOR:.1f}x",
                f"{ms(w.gets.p99_ms)} vs {ms(without.p99_ms)} ({factor:.2f}x)",
                factor <= TARGET_GET_P99_FACTOR,
            )
        )
    return found


def render(results: Results) -> list[str]:
    w = results.watchers
    if w is None:
        return []
    p = w.propagation
    without = results.get_replicas(16)[0]
    gets = w.gets
    return [
        "",
        f"## 6. {w.streams:,} WatchReplicas streams",
        "",
        f"{w.streams - w.cluster_wide:,} streams each on one of {w.namespaces} namespaces (one Deployment each), "
        f"{w.cluster_wide} on all namespaces, over gRPC (100 streams per connection), while {w.rate:.0f} Deployments "
        f"per second were scaled through the apiserver for {w.seconds:.0f} s ({w.changes:,} changes), with ghz "
        "sending GetReplicas at c=16 meanwhile. Propagation: from just before the PATCH until each stream that must "
        "see the change received it. Event-loop lag: the server's own `scalekeeper_event_loop_lag_seconds`, a 10 ms "
        "timer's delay, over the run.",
        "",
        *table(
            ["", "value"],
            [
                ["deliveries", f"{len(p):,} ({w.missing:,} missing, {w.aborted} streams ended early)"],
                ["propagation p50 / p99 / worst", f"{ms(p.p50)} / {ms(p.p99)} / {ms(p.worst)}"],
                [
                    "GetReplicas c=16 with the streams: req/s, p99, CPU/call",
                    f"{gets.rps:,.0f}, {ms(gets.p99_ms)}, {cpu(gets)}" if gets else "n/a",
                ],
                [
                    "GetReplicas c=16 without (section 1): req/s, p99, CPU/call",
                    f"{without.rps:,.0f}, {ms(without.p99_ms)}, {cpu(without)}" if without else "n/a",
                ],
                ["event-loop lag samples", f"{w.lag_samples:,}"],
                ["of which later than 20 ms", f"{w.lag_over_20ms:,} (largest bucket reached: {w.lag_worst_bucket})"],
            ],
        ),
    ]
