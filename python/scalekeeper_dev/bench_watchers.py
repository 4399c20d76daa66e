"""Many WatchReplicas streams while Deployments change (issue 14's "1,000 watchers" scenario).

``streams`` watchers (most on one of ``namespace_count`` namespaces, a tenth
on all namespaces) stay open while ``RATE`` Deployments per second are scaled
through the apiserver. Reported: propagation from just before each PATCH to
each stream that must see it, GetReplicas under ghz at c=16 meanwhile (and
the same load with no streams, quiet and with the same changes), and the
server's event-loop lag histograms (``scalekeeper_event_loop_*lag_seconds``,
sampled every 10 ms by the server itself) over the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import grpc

from scalekeeper.kube.client import KubeClient
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import bench_scale
from scalekeeper_dev.bench_env import Scalekeeper
from scalekeeper_dev.bench_latency import Samples, scale_directly
from scalekeeper_dev.bench_load import Ghz, LoadResult
from scalekeeper_dev.bench_report import LagWindow, Results, Target, cpu, get_messages, ghz_run, log, ms, table

TARGET_PROPAGATION_P99_MS = 100.0
TARGET_GET_P99_FACTOR = 1.5  # GetReplicas p99 at c=16 with the streams, against without
TARGET_LAG_MS = 20.0
RATE = 20.0  # Deployments scaled per second
SECONDS = 20.0  # each run: with the streams, and each one it is compared with
NAMESPACE_PREFIX = "bench-watchers"
DEPLOYMENT = "app"
STREAMS_PER_CHANNEL = 100  # one HTTP/2 connection per hundred streams, as many clients would have
LAG_METRIC = "scalekeeper_event_loop_lag_seconds"
BUSY_LAG_METRIC = "scalekeeper_event_loop_busy_lag_seconds"


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
    # From the PATCH's answer instead of from before it: scalekeeper's own share (0 when the event came first).
    after_write: Samples = field(default_factory=Samples)
    gets: LoadResult | None = None
    gets_without: list[LoadResult] = field(default_factory=list)  # the same load before and after the streams
    gets_changes_only: LoadResult | None = None  # the same load and changes, no stream open
    lag: LagWindow | None = None  # how late the loop's 10 ms timer fired
    busy_lag: LagWindow | None = None  # the part of it the loop spent running


class _Expectations:
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


async def measure(
    results: Results, kube: KubeClient, ghz: Ghz, server: Scalekeeper, *, streams: int, namespace_count: int
) -> None:
    log(f"6. {streams} WatchReplicas streams in {namespace_count} namespaces while {RATE:.0f} Deployments change/s")
    await setup(kube, namespace_count)

    async def ghz_get() -> LoadResult:
        load = {"concurrency": 16, "duration": f"{SECONDS:.0f}s", "data_name": "get-100"}
        return await ghz_run(ghz, server.target, "GetReplicas", get_messages(), server_pid=server.pid, **load)

    cluster_wide = streams // 10
    result = WatchersResult(streams, namespace_count, cluster_wide, RATE, SECONDS)
    result.gets_without.append(await ghz_get())
    # The same changes with no stream open: what the apiserver's share of this machine's two cores costs the
    # GetReplicas load by itself, so that the streams' own cost can be told apart from it.
    no_streams = dict.fromkeys(namespaces(namespace_count), 0)
    gets = asyncio.create_task(ghz_get())
    await _scale_at_rate(kube, _Expectations(), no_streams)
    result.gets_changes_only = await gets
    # Cluster-wide streams spread over the connections, as they would come from different clients.
    per_namespace = iter(namespaces(namespace_count)[i % namespace_count] for i in range(streams - cluster_wide))
    wide_every = streams // cluster_wide if cluster_wide else streams + 1
    scopes = [
        "" if i % wide_every == 0 and i // wide_every < cluster_wide else next(per_namespace) for i in range(streams)
    ]
    channels = [
        grpc.aio.secure_channel(server.target, ghz.certs.grpc_credentials("reader"))
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
        metrics_before = await asyncio.to_thread(server.metrics)
        gets = asyncio.create_task(ghz_get())
        result.changes = await _scale_at_rate(kube, expect, watchers_per_namespace)
        result.gets = await gets
        # Let the last changes arrive (bounded), then read the lag over the whole run.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(expect.all_seen.wait(), timeout=10)
        metrics_after = await asyncio.to_thread(server.metrics)
        result.lag = LagWindow.between(LAG_METRIC, metrics_before, metrics_after)
        result.busy_lag = LagWindow.between(BUSY_LAG_METRIC, metrics_before, metrics_after)
        result.missing = sum(max(0, left) for _, left in expect.sent.values())
        result.propagation, result.after_write = expect.samples, expect.after_write
        result.aborted = sum(1 for task in tasks if task.done())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    result.gets_without.append(await ghz_get())
    results.watchers = result


async def _scale_at_rate(kube: KubeClient, expect: _Expectations, watchers_per_namespace: dict[str, int]) -> int:
    """Scale one Deployment after another, round the namespaces, for ``SECONDS``; returns how many changes.

    Open loop at a constant rate, as ghz --rps paces calls: change i is sent at i / ``RATE`` s, whether or not
    earlier PATCHes have been answered. Every change is a new count for its Deployment, so none is a no-op,
    also when a second run starts over: by then each Deployment holds a count from late in the first.
    """
    names = list(watchers_per_namespace)
    sends: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    changes = 0
    while (due := changes / RATE) < SECONDS:
        await asyncio.sleep(max(0.0, started + due - time.perf_counter()))
        changes += 1
        namespace = names[changes % len(names)]
        replicas = changes + 1
        expect.expect(namespace, replicas, watchers_per_namespace[namespace])
        sends.append(asyncio.create_task(expect.send(kube, namespace, replicas)))
    await asyncio.gather(*sends)
    return changes


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
            f"{n}: event loop blocked (busy lag)",
            f"never > {TARGET_LAG_MS:.0f} ms",
            f"{w.busy_lag.over_20ms:,} of {w.busy_lag.samples:,} samples over" if w.busy_lag else "n/a",
            w.busy_lag is not None and w.busy_lag.over_20ms == 0,
        ),
    ]
    without = _mean_p99(w)
    if w.gets is not None and without:
        factor = w.gets.p99_ms / without
        changes_only = w.gets_changes_only
        aside = f"; {w.gets.p99_ms / changes_only.p99_ms:.2f}x the changes alone" if changes_only else ""
        found.append(
            Target(
                f"{n}: GetReplicas p99 c=16, against without",
                f"<= {TARGET_GET_P99_FACTOR:.1f}x",
                f"{ms(w.gets.p99_ms)} vs {ms(without)} ({factor:.2f}x{aside})",
                factor <= TARGET_GET_P99_FACTOR,
            )
        )
    return found


def _mean_p99(w: WatchersResult) -> float:
    """GetReplicas p99 without the streams: the mean of the runs before and after them."""
    return sum(r.p99_ms for r in w.gets_without) / len(w.gets_without) if w.gets_without else 0.0


def render(results: Results) -> list[str]:
    w = results.watchers
    if w is None:
        return []
    p = w.propagation
    gets = w.gets
    return [
        "",
        f"## 6. {w.streams:,} WatchReplicas streams",
        "",
        f"{w.streams - w.cluster_wide:,} streams each on one of {w.namespaces} namespaces (one Deployment each) and "
        f"{w.cluster_wide} on all namespaces, spread over connections of 100 streams, while {w.rate:.0f} Deployments "
        f"per second (one every {1000 / w.rate:.0f} ms, open loop) were scaled through the apiserver for "
        f"{w.seconds:.0f} s ({w.changes:,} changes). Meanwhile ghz sent GetReplicas at c=16 as fast as the server "
        "answered, as in section 1; the same load before the streams opened and after they closed is what the p99 "
        "is compared with. A run with the same changes but no stream open shows what the apiserver's share of the "
        "two cores costs that load by itself. Propagation: from just before the PATCH until each stream that must "
        "see the change received it. Event loop: the server's own histograms, how late a 10 ms timer fired "
        "(`scalekeeper_event_loop_lag_seconds`: waiting for a core counts) and the part of that the loop's thread "
        "spent running (`scalekeeper_event_loop_busy_lag_seconds`: a blocking step), which is the target.",
        "",
        *table(
            ["", "value"],
            [
                ["deliveries", f"{len(p):,} ({w.missing:,} missing, {w.aborted} streams ended early)"],
                ["propagation p50 / p99 / worst", f"{ms(p.p50)} / {ms(p.p99)} / {ms(p.worst)}"],
                *(
                    [f"GetReplicas c=16, {label}: req/s, p50, p99, CPU/call", _load(run)]
                    for label, run in (
                        ("before the streams", w.gets_without[0] if w.gets_without else None),
                        ("the changes but no streams", w.gets_changes_only),
                        ("with the streams", gets),
                        ("after the streams", w.gets_without[1] if len(w.gets_without) > 1 else None),
                    )
                ),
                ["propagation from the PATCH's answer p50 / p99", f"{ms(w.after_write.p50)} / {ms(w.after_write.p99)}"],
                *(
                    [label, f"{lag.over_20ms:,} of {lag.samples:,} samples over 20 ms (all within {lag.worst_bucket})"]
                    for label, lag in (("event loop late", w.lag), ("event loop busy (blocked)", w.busy_lag))
                    if lag is not None
                ),
            ],
        ),
    ]


def _load(run: LoadResult | None) -> str:
    return f"{run.rps:,.0f}, {ms(run.p50_ms)}, {ms(run.p99_ms)}, {cpu(run)}" if run else "n/a"
