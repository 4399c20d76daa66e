"""Many WatchReplicas streams while Deployments change (issue 14's "1,000 watchers" scenario).

``streams`` watchers (most on one of ``namespace_count`` namespaces, a tenth
on all namespaces) stay open while ``RATE`` Deployments per second are scaled
through the apiserver. Reported: propagation from just before each PATCH to
each stream that must see it, GetReplicas under ghz at c=16 meanwhile (and
the same load with no streams, quiet and with the same changes; and on the
bare grpc.aio server with the same streams woken as often), and the
server's event-loop lag histograms (``scalekeeper_event_loop_*lag_seconds``,
sampled every 10 ms by the server itself) over the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from scalekeeper.kube.client import KubeClient
from scalekeeper_dev import bench_scale
from scalekeeper_dev.bench_env import BareServer, Scalekeeper
from scalekeeper_dev.bench_latency import Samples
from scalekeeper_dev.bench_load import Ghz, LoadResult
from scalekeeper_dev.bench_report import LagWindow, Results, Target, cpu, get_messages, ghz_run, log, ms, table
from scalekeeper_dev.bench_streams import DEPLOYMENT, STREAMS_PER_CHANNEL, Expectations, open_streams

TARGET_PROPAGATION_P99_MS = 100.0
TARGET_GET_P99_FACTOR = 1.5  # GetReplicas p99 at c=16 with the streams, against without
TARGET_LAG_MS = 20.0
RATE = 20.0  # Deployments scaled per second
SECONDS = 20.0  # each run: with the streams, and each one it is compared with
NAMESPACE_PREFIX = "bench-watchers"
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
    changes: int = 0
    propagation: Samples = field(default_factory=Samples)
    missing: int = 0  # deliveries that never arrived
    aborted: int = 0  # streams that ended before the run did
    # From the PATCH's answer instead of from before it: scalekeeper's own share (0 when the event came first).
    after_write: Samples = field(default_factory=Samples)
    gets: LoadResult | None = None
    gets_without: list[LoadResult] = field(default_factory=list)  # the same load before and after the streams
    gets_changes_only: LoadResult | None = None  # the same load and changes, no stream open
    bare_without: list[LoadResult] = field(default_factory=list)  # the bare grpc.aio server, before and after
    bare_with: LoadResult | None = None  # the bare server with the same streams woken as often
    lag: LagWindow | None = None  # how late the loop's 10 ms timer fired
    busy_lag: LagWindow | None = None  # the part of it the loop spent running


async def measure(
    results: Results,
    kube: KubeClient,
    ghz: Ghz,
    server: Scalekeeper,
    workdir: Path,
    *,
    streams: int,
    namespace_count: int,
) -> None:
    log(f"6. {streams} WatchReplicas streams in {namespace_count} namespaces while {RATE:.0f} Deployments change/s")
    await setup(kube, namespace_count)
    result = WatchersResult(streams, namespace_count, streams // 10)
    scopes = _scopes(streams, namespace_count, result.cluster_wide)
    result.gets_without.append(await _gets(ghz, server.target, server.pid))
    # The same changes with no stream open: what the apiserver's share of this machine's two cores costs the
    # GetReplicas load by itself, so that the streams' own cost can be told apart from it.
    changes_only = asyncio.create_task(_gets(ghz, server.target, server.pid))
    await _scale_at_rate(kube, Expectations(), dict.fromkeys(namespaces(namespace_count), 0))
    result.gets_changes_only = await changes_only
    expect = Expectations()
    watchers_per_namespace = {ns: scopes.count(ns) + result.cluster_wide for ns in namespaces(namespace_count)}
    async with open_streams(server.target, ghz.certs, scopes, expect) as tasks:
        metrics_before = await asyncio.to_thread(server.metrics)
        with_streams = asyncio.create_task(_gets(ghz, server.target, server.pid))
        result.changes = await _scale_at_rate(kube, expect, watchers_per_namespace)
        result.gets = await with_streams
        # Let the last changes arrive (bounded), then read the lag over the whole run.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(expect.all_seen.wait(), timeout=10)
        metrics_after = await asyncio.to_thread(server.metrics)
        result.aborted = sum(1 for task in tasks if task.done())
    result.lag = LagWindow.between(LAG_METRIC, metrics_before, metrics_after)
    result.busy_lag = LagWindow.between(BUSY_LAG_METRIC, metrics_before, metrics_after)
    result.missing = expect.missing()
    result.propagation, result.after_write = expect.samples, expect.after_write
    result.gets_without.append(await _gets(ghz, server.target, server.pid))
    result.bare_without, result.bare_with = await _bare_floor(ghz, workdir, scopes)
    results.watchers = result


def _scopes(streams: int, namespace_count: int, cluster_wide: int) -> list[str]:
    """Each stream's namespace, "" for all; the cluster-wide ones spread over the connections, as from many clients."""
    per_namespace = iter(namespaces(namespace_count)[i % namespace_count] for i in range(streams - cluster_wide))
    wide_every = streams // cluster_wide if cluster_wide else streams + 1
    return [
        "" if i % wide_every == 0 and i // wide_every < cluster_wide else next(per_namespace) for i in range(streams)
    ]


async def _gets(ghz: Ghz, target: str, pid: int) -> LoadResult:
    load = {"concurrency": 16, "duration": f"{SECONDS:.0f}s", "data_name": "get-100"}
    return await ghz_run(ghz, target, "GetReplicas", get_messages(), server_pid=pid, **load)


async def _bare_floor(ghz: Ghz, workdir: Path, scopes: list[str]) -> tuple[list[LoadResult], LoadResult]:
    """The same load on the bare grpc.aio server: before, with and after the same streams, woken as often.

    What grpc.aio itself makes the streams cost the unary calls, with no apiserver and no scalekeeper code.
    """
    bare = BareServer(ghz.certs, workdir, f"--watch-rate={RATE}").start()
    try:
        without = [await _gets(ghz, bare.target, bare.pid)]
        async with open_streams(bare.target, ghz.certs, scopes, Expectations()):
            with_streams = await _gets(ghz, bare.target, bare.pid)
        without.append(await _gets(ghz, bare.target, bare.pid))
        return without, with_streams
    finally:
        bare.stop()


async def _scale_at_rate(kube: KubeClient, expect: Expectations, watchers_per_namespace: dict[str, int]) -> int:
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
    without = _mean_p99(w.gets_without)
    if w.gets is not None and without:
        factor = w.gets.p99_ms / without
        asides = []
        if w.gets_changes_only is not None:
            asides.append(f"{w.gets.p99_ms / w.gets_changes_only.p99_ms:.2f}x the changes alone")
        if w.bare_with is not None and w.bare_without:
            asides.append(f"bare grpc.aio {w.bare_with.p99_ms / _mean_p99(w.bare_without):.2f}x")
        aside = "".join(f"; {a}" for a in asides)
        found.append(
            Target(
                f"{n}: GetReplicas p99 c=16, against without",
                f"<= {TARGET_GET_P99_FACTOR:.1f}x",
                f"{ms(w.gets.p99_ms)} vs {ms(without)} ({factor:.2f}x{aside})",
                factor <= TARGET_GET_P99_FACTOR,
            )
        )
    return found


def _mean_p99(runs: list[LoadResult]) -> float:
    """GetReplicas p99 without the streams: the mean of the runs before and after them."""
    return sum(r.p99_ms for r in runs) / len(runs) if runs else 0.0


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
        f"{w.cluster_wide} on all namespaces, spread over connections of {STREAMS_PER_CHANNEL} streams, while "
        f"{RATE:.0f} Deployments per second (one every {1000 / RATE:.0f} ms, open loop) were scaled through the "
        f"apiserver for {SECONDS:.0f} s ({w.changes:,} changes). Meanwhile ghz sent GetReplicas at c=16 as fast as the "
        "server answered, as in section 1; the same load before the streams opened and after they closed is what the "
        "p99 is compared with. A run with the same changes but no stream open shows what the apiserver's share of the "
        "two cores costs that load by itself. The bare grpc.aio server of section 1, with a canned WatchReplicas that "
        "wakes one namespace's streams and the all-namespace ones as often (`--watch-rate`), takes the same streams "
        "and load: its p99 with against without is the floor that grpc.aio itself sets. Propagation: from just before "
        "the PATCH until each stream that must see the change received it. Event loop: the server's own histograms, "
        "how late a 10 ms timer fired (`scalekeeper_event_loop_lag_seconds`: waiting for a core counts) and the part "
        "of that the loop's thread spent running (`scalekeeper_event_loop_busy_lag_seconds`: a blocking step), which "
        "is the target.",
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
                        ("bare grpc.aio, before", w.bare_without[0] if w.bare_without else None),
                        ("bare grpc.aio, with the streams", w.bare_with),
                        ("bare grpc.aio, after", w.bare_without[1] if len(w.bare_without) > 1 else None),
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
