"""``make bench``: scalekeeper's performance against its targets, written to docs/benchmarks.md.

Everything runs on this machine against the harness's own control plane
(etcd + kube-apiserver, started here and stopped at the end), so the numbers
say what one core of Python can do next to a real apiserver, not what a
cluster can. The load generator (ghz) and the apiserver share the machine
with the server; the report says how many cores there were and how loaded
the machine was, and lists the exact commands.

Targets are reported, never asserted: a benchmark that fails a build on a
noisy machine gets ignored. Where one is missed, the server is profiled with
py-spy under the same load and the hottest functions go into the report.

Sections (numbered as in the report):
1. GetReplicas and ListDeployments (page of 100) under ghz at concurrency
   1, 16, 64; the same load against :mod:`scalekeeper_dev.bare_server`.
2. apiserver requests caused by 10,000 read RPCs (its own /metrics).
3. watch propagation (direct scale -> WatchReplicas / GetReplicas).
4. reconcile (SetReplicas -> Deployment spec) and drift revert.
5. 10,000 Deployments in 100 namespaces: start-up to ready, RSS, listing
   every page, GetReplicas latency against the 100-Deployment case.
"""

from __future__ import annotations

# Before grpc is imported (the in-process clients follow the server's TLS policy).
from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402

from scalekeeper.kube.client import KubeClient, connect  # noqa: E402
from scalekeeper.v1 import replicas_pb2 as pb  # noqa: E402
from scalekeeper.v1 import replicas_pb2_grpc  # noqa: E402
from scalekeeper_dev import bench_latency, bench_profile, bench_scale, bench_watchers, toolchain  # noqa: E402
from scalekeeper_dev.bench_env import (  # noqa: E402
    REPO,
    BareServer,
    BenchError,
    Certs,
    Scalekeeper,
    apiserver_requests,
    cpu_seconds,
    describe_machine,
    metric_sum,
    rss_mib,
)
from scalekeeper_dev.bench_load import Ghz, LoadResult  # noqa: E402
from scalekeeper_dev.controlplane import ControlPlane  # noqa: E402

SMALL_NAMESPACE = "bench"
WATCH_NAMESPACE = "bench-watch"
RECONCILE_NAMESPACE = "bench-reconcile"
CONCURRENCIES = (1, 16, 64)
MB = 1_000_000 / 1024 / 1024  # MiB per MB: targets are in MB

# The targets of issue 7; reported, never asserted.
TARGET_RPS = 4000.0
TARGET_P99_MS = 10.0
TARGET_BARE_RATIO = 0.75
TARGET_CPU_RATIO = 1.15  # issue 14: server CPU per GetReplicas within 1.15x of bare grpcio
TARGET_WATCH_P99_MS = 100.0
TARGET_RECONCILE_P99_MS = 250.0
TARGET_READY_S = 10.0
TARGET_RSS_MB = 150.0
FLAT_LATENCY_FACTOR = 1.25  # "flat": 10,000-Deployment latency within 25% of the 100 case


@dataclass
class Target:
    what: str
    wanted: str
    measured: str
    met: bool


@dataclass
class Results:
    machine: dict[str, str] = field(default_factory=dict)
    server_argv: list[str] = field(default_factory=list)
    bare_argv: list[str] = field(default_factory=list)
    load: dict[tuple[str, int], tuple[LoadResult, LoadResult]] = field(default_factory=dict)
    quiet_log: LoadResult | None = None
    apiserver_delta: dict[tuple[str, str], float] = field(default_factory=dict)
    reads_for_delta: int = 0
    propagation: bench_latency.PropagationResult | None = None
    reconcile: bench_latency.ReconcileResult | None = None
    small_ready_s: float = math.nan
    scale_objects: int = 0
    scale_namespaces: int = 0
    scale_setup_s: float = math.nan
    scale_ready_s: float = math.nan
    scale_cache_objects: float = math.nan
    scale_rss_ready_mb: float = math.nan
    scale_rss_peak_mb: float = math.nan
    small_rss_mb: float = math.nan
    list_all: dict[int, bench_scale.ListAllResult] = field(default_factory=dict)
    scale_load: dict[int, LoadResult] = field(default_factory=dict)
    watchers: bench_watchers.WatchersResult | None = None
    profiles: list[tuple[str, bench_profile.Profile | str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_average_end: str = ""
    elapsed_s: float = 0.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the phases --------------------------------------------------------------------------------------


def _get_messages(namespace: str, names: list[str]) -> list[dict[str, Any]]:
    return [{"namespace": namespace, "name": name} for name in names]


async def _ghz(ghz: Ghz, *args: Any, server_pid: int | None = None, **kwargs: Any) -> LoadResult:
    """One ghz run (off the event loop, so open streams and channels stay serviced).

    With ``server_pid``, the result carries the server's CPU microseconds per OK
    call: steadier than req/s on a shared machine, since time the server spends
    waiting for a core is not counted.
    """
    before = cpu_seconds(server_pid) if server_pid else 0.0
    result: LoadResult = await asyncio.to_thread(ghz.run, *args, **kwargs)
    ok = result.statuses.get("OK", 0)
    if server_pid and ok:
        result = dataclasses.replace(result, server_cpu_us=(cpu_seconds(server_pid) - before) * 1e6 / ok)
    return result


def _best(runs: list[LoadResult]) -> LoadResult:
    # Background load on a shared machine only ever slows a run down: the fastest is the least disturbed,
    # and so is the run with the least CPU per call (cache misses and preemption only add to it).
    fastest = max(runs, key=lambda r: r.rps)
    return dataclasses.replace(fastest, server_cpu_us=min(r.server_cpu_us for r in runs))


async def phase_load(
    results: Results, ghz: Ghz, server: Scalekeeper, bare: BareServer, *, duration: str, repeat: int
) -> None:
    names = [f"deploy-{i:03d}" for i in range(100)]
    workloads = {
        "GetReplicas": ("get-100", _get_messages(SMALL_NAMESPACE, names)),
        "ListDeployments": ("list-page-100", [{"namespace": SMALL_NAMESPACE, "page_size": 100}]),
    }
    get_name, get_messages = workloads["GetReplicas"]
    for target in (server.target, bare.target):  # warm-up: connections, caches, the interpreter's dicts
        await _ghz(ghz, target, "GetReplicas", get_messages, concurrency=16, duration="2s", data_name=get_name)
    for method, (data_name, messages) in workloads.items():
        for concurrency in CONCURRENCIES:
            log(f"1. {method} at concurrency {concurrency}")
            load = {"concurrency": concurrency, "duration": duration, "data_name": data_name}
            ours, theirs = [], []
            for _ in range(repeat):
                # Interleaved, so that a change in background load hits both sides alike.
                ours.append(await _ghz(ghz, server.target, method, messages, server_pid=server.pid, **load))
                theirs.append(await _ghz(ghz, bare.target, method, messages, server_pid=bare.pid, **load))
            results.load[(method, concurrency)] = (_best(ours), _best(theirs))


async def phase_apiserver_requests(results: Results, plane: ControlPlane, ghz: Ghz, server: Scalekeeper) -> None:
    log("2. apiserver requests caused by 10,000 reads")
    names = [f"deploy-{i:03d}" for i in range(100)]
    before = await asyncio.to_thread(apiserver_requests, plane)
    gets = await _ghz(
        ghz,
        server.target,
        "GetReplicas",
        _get_messages(SMALL_NAMESPACE, names),
        concurrency=16,
        total=8000,
        data_name="get-100",
    )
    lists = await _ghz(
        ghz,
        server.target,
        "ListDeployments",
        [{"namespace": SMALL_NAMESPACE, "page_size": 100}, {"page_size": 100}],
        concurrency=16,
        total=2000,
        data_name="list-mixed",
    )
    after = await asyncio.to_thread(apiserver_requests, plane)
    results.reads_for_delta = gets.statuses.get("OK", 0) + lists.statuses.get("OK", 0)
    results.apiserver_delta = {
        key: after.get(key, 0.0) - before.get(key, 0.0)
        for key in sorted(set(before) | set(after))
        if after.get(key, 0.0) - before.get(key, 0.0)
    }


async def _wait_reconciled(kube: KubeClient, namespace: str, name: str, replicas: int, timeout: float) -> None:
    from scalekeeper.kube.resources import DEPLOYMENTS

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = await kube.request("GET", DEPLOYMENTS.path(namespace, name))
        if deployment["spec"]["replicas"] == replicas:
            return
        await asyncio.sleep(0.1)
    raise BenchError(f"the controller did not scale {namespace}/{name} to {replicas} within {timeout:.0f}s")


async def phase_latencies(results: Results, kube: KubeClient, server: Scalekeeper, certs: Certs, changes: int) -> None:
    channel = grpc.aio.secure_channel(server.target, certs.grpc_credentials("writer"))
    try:
        log(f"3. watch propagation over {changes} changes")
        watch_names = [f"watched-{i:02d}" for i in range(20)]
        results.propagation = await bench_latency.watch_propagation(
            channel, kube, WATCH_NAMESPACE, watch_names, changes
        )
        # The controller must hold its Lease before reconcile latency means anything.
        stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
        await stub.SetReplicas(pb.SetReplicasRequest(namespace=RECONCILE_NAMESPACE, name="warm-up", replicas=2))
        await _wait_reconciled(kube, RECONCILE_NAMESPACE, "warm-up", 2, timeout=90)
        log(f"4. reconcile and drift revert over {changes} changes each")
        reconcile_names = [f"managed-{i:02d}" for i in range(20)]
        results.reconcile = await bench_latency.reconcile_latency(
            channel, kube, RECONCILE_NAMESPACE, reconcile_names, changes
        )
    finally:
        await channel.close()


async def phase_scale(
    results: Results,
    kube: KubeClient,
    ghz: Ghz,
    make_server: Any,
    certs: Certs,
    *,
    namespaces: int,
    per_namespace: int,
    duration: str,
    repeat: int,
) -> None:
    log(f"5. creating {namespaces * per_namespace} Deployments in {namespaces} namespaces (setup)")
    started = time.perf_counter()
    keys = [(f"bench-scale-{n:03d}", f"deploy-{i:03d}") for n in range(namespaces) for i in range(per_namespace)]
    await asyncio.gather(*(bench_scale.create_namespace(kube, f"bench-scale-{n:03d}") for n in range(namespaces)))
    await bench_scale.create_many(kube, keys)
    results.scale_setup_s = time.perf_counter() - started
    results.scale_objects = len(keys)
    results.scale_namespaces = namespaces

    log("5. starting a fresh server: time to ready")
    server: Scalekeeper = make_server("scale")
    try:
        results.scale_ready_s = server.wait_ready(timeout=600)
        results.scale_rss_ready_mb = rss_mib(server.pid)[0] / MB
        results.scale_cache_objects = metric_sum(server.metrics(), "scalekeeper_cache_objects", kind="deployments")
        channel = grpc.aio.secure_channel(server.target, certs.grpc_credentials("reader"))
        try:
            for page_size in (100, 1000):
                log(f"5. ListDeployments over all pages of {page_size}")
                results.list_all[page_size] = await bench_scale.list_all(channel, page_size)
        finally:
            await channel.close()
        chosen = random.Random(7).sample(keys, min(1000, len(keys)))
        messages = [{"namespace": ns, "name": name} for ns, name in chosen]
        for concurrency in (1, 16):
            log(f"5. GetReplicas over 10,000 Deployments at concurrency {concurrency}")
            runs = [
                await _ghz(
                    ghz,
                    server.target,
                    "GetReplicas",
                    messages,
                    concurrency=concurrency,
                    duration=duration,
                    data_name="get-1000-of-10000",
                )
                for _ in range(repeat)
            ]
            results.scale_load[concurrency] = _best(runs)
        results.scale_rss_peak_mb = rss_mib(server.pid)[1] / MB
    finally:
        server.stop()


async def phase_watchers(
    results: Results, kube: KubeClient, ghz: Ghz, server: Scalekeeper, *, streams: int, namespaces: int
) -> None:
    log(f"6. {streams} WatchReplicas streams in {namespaces} namespaces while 20 Deployments change per second")
    await bench_watchers.setup(kube, namespaces)
    messages = _get_messages(SMALL_NAMESPACE, [f"deploy-{i:03d}" for i in range(100)])

    async def gets(duration: str) -> LoadResult:
        load = {"concurrency": 16, "duration": duration, "data_name": "get-100"}
        return await _ghz(ghz, server.target, "GetReplicas", messages, server_pid=server.pid, **load)

    results.watchers = await bench_watchers.run(
        server.target,
        ghz.certs,
        kube,
        server.metrics,
        gets,
        streams=streams,
        namespace_count=namespaces,
        cluster_wide=streams // 10,
    )


async def profile_missed_targets(results: Results, ghz: Ghz, server: Scalekeeper, workdir: Path) -> None:
    ours, bare = results.load[("GetReplicas", 16)]
    if ours.rps < TARGET_RPS or ours.p99_ms >= TARGET_P99_MS or ours.rps < TARGET_BARE_RATIO * bare.rps:
        messages = _get_messages(SMALL_NAMESPACE, [f"deploy-{i:03d}" for i in range(100)])
        await profile_under_load(
            results, ghz, server, workdir, label="GetReplicas, c=16", method="GetReplicas", messages=messages
        )
    ours, bare = results.load[("ListDeployments", 16)]
    if ours.rps < TARGET_BARE_RATIO * bare.rps:
        await profile_under_load(
            results,
            ghz,
            server,
            workdir,
            label="ListDeployments (page of 100), c=16",
            method="ListDeployments",
            messages=[{"namespace": SMALL_NAMESPACE, "page_size": 100}],
            data_name="list-page-100",
        )


async def profile_under_load(
    results: Results,
    ghz: Ghz,
    server: Scalekeeper,
    workdir: Path,
    *,
    label: str,
    method: str,
    messages: Any,
    data_name: str = "get-100",
) -> None:
    output = workdir / f"profile-{method}.txt"
    seconds = 8
    process = bench_profile.record(server.pid, seconds, output)
    if process is None:
        results.profiles.append((label, "py-spy unavailable (neither py-spy nor uv on PATH)"))
        return
    log(f"profiling the server with py-spy during {method} ({label})")
    await asyncio.sleep(1.0)  # attach before the load starts
    await _ghz(ghz, server.target, method, messages, concurrency=16, duration=f"{seconds}s", data_name=data_name)
    results.profiles.append((label, await asyncio.to_thread(bench_profile.finish, process, output)))


# -- targets and report ------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _notes(results: Results) -> None:
    """Observations the figures support by themselves; the interpretation is in the issue's report."""
    ours, bare = results.load.get(("GetReplicas", 16), (None, None))
    if bare is not None and bare.rps < TARGET_RPS:
        results.notes.append(
            f"The bare grpc.aio server itself peaks at {max(b.rps for _, b in results.load.values()):,.0f} req/s on "
            f"this machine: {TARGET_RPS:,.0f} req/s is out of reach here for any grpc.aio server, so the ratio to "
            "bare grpcio is the figure that says how much scalekeeper adds."
        )
    quiet = results.quiet_log
    if ours is not None and bare is not None and quiet is not None and bare.rps:
        results.notes.append(
            f"Without the per-call access log line (`--log-level=WARNING`) GetReplicas at c=16 reaches "
            f"{quiet.rps:,.0f} req/s, {quiet.rps / bare.rps:.0%} of bare grpcio (with it: {ours.rps / bare.rps:.0%})."
        )


def evaluate(results: Results) -> None:
    _notes(results)
    targets = results.targets
    ours, bare = results.load.get(("GetReplicas", 16), (None, None))
    if ours is not None and bare is not None:
        ratio = ours.rps / bare.rps if bare.rps else math.nan
        targets.append(
            Target("GetReplicas req/s, c=16", f">= {TARGET_RPS:,.0f}", f"{ours.rps:,.0f}", ours.rps >= TARGET_RPS)
        )
        targets.append(
            Target("GetReplicas p99, c=16", f"< {TARGET_P99_MS:.0f} ms", _ms(ours.p99_ms), ours.p99_ms < TARGET_P99_MS)
        )
        targets.append(
            Target(
                "GetReplicas vs bare grpcio, c=16",
                f">= {TARGET_BARE_RATIO:.0%}",
                f"{ratio:.0%}",
                ratio >= TARGET_BARE_RATIO,
            )
        )
    if ours is not None and bare is not None:
        cpu_ratio = ours.server_cpu_us / bare.server_cpu_us
        targets.append(
            Target(
                "GetReplicas server CPU per call vs bare grpcio, c=16",
                f"<= {TARGET_CPU_RATIO:.2f}x",
                f"{ours.server_cpu_us:,.0f} vs {bare.server_cpu_us:,.0f} us ({cpu_ratio:.2f}x)",
                cpu_ratio <= TARGET_CPU_RATIO,
            )
        )
    if results.apiserver_delta is not None and results.reads_for_delta:
        total = sum(results.apiserver_delta.values())
        targets.append(
            Target(
                f"apiserver requests for {results.reads_for_delta:,} reads", "0", f"{total:.0f}, every verb", total == 0
            )
        )
    if results.propagation is not None:
        p = results.propagation
        for label, samples in (
            ("watch propagation to WatchReplicas", p.watch),
            ("watch propagation to GetReplicas", p.get),
        ):
            met = samples.p99 < TARGET_WATCH_P99_MS and not samples.timeouts
            targets.append(Target(f"{label} p99", f"< {TARGET_WATCH_P99_MS:.0f} ms", _ms(samples.p99), met))
    if results.reconcile is not None:
        for label, samples in (
            ("reconcile", results.reconcile.reconcile),
            ("drift revert", results.reconcile.drift_revert),
        ):
            met = samples.p99 < TARGET_RECONCILE_P99_MS and not samples.timeouts
            targets.append(Target(f"{label} p99", f"< {TARGET_RECONCILE_P99_MS:.0f} ms", _ms(samples.p99), met))
    if results.scale_objects:
        targets.append(
            Target(
                f"{results.scale_objects:,} Deployments: start to ready",
                f"< {TARGET_READY_S:.0f} s",
                f"{results.scale_ready_s:.1f} s",
                results.scale_ready_s < TARGET_READY_S,
            )
        )
        rss = max(results.scale_rss_ready_mb, results.scale_rss_peak_mb)
        targets.append(
            Target(
                f"{results.scale_objects:,} Deployments: server RSS (peak)",
                f"< {TARGET_RSS_MB:.0f} MB",
                f"{rss:.0f} MB",
                rss < TARGET_RSS_MB,
            )
        )
        small = results.load.get(("GetReplicas", 16), (None, None))[0]
        large = results.scale_load.get(16)
        if small is not None and large is not None:
            factor = large.p50_ms / small.p50_ms if small.p50_ms else math.nan
            factor99 = large.p99_ms / small.p99_ms if small.p99_ms else math.nan
            targets.append(
                Target(
                    f"GetReplicas latency, {results.scale_objects:,} vs 100 Deployments (c=16)",
                    f"flat (<= {FLAT_LATENCY_FACTOR:.2f}x)",
                    f"p50 {factor:.2f}x, p99 {factor99:.2f}x",
                    max(factor, factor99) <= FLAT_LATENCY_FACTOR,
                )
            )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _statuses(result: LoadResult) -> str:
    errors = {k: v for k, v in result.statuses.items() if k != "OK"}
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "-"


def _render_scale(results: Results) -> list[str]:
    out: list[str] = []
    if not results.scale_objects:
        return out
    out += [
        "",
        f"## 5. {results.scale_objects:,} Deployments in {results.scale_namespaces} namespaces",
        "",
        f"Created in {results.scale_setup_s:.0f} s (setup, concurrent requests; not a measurement). "
        "Then a fresh server:",
        "",
        f"* process start to `/readyz` 200 (cache synced): **{results.scale_ready_s:.1f} s** "
        f"(with 100 Deployments: {results.small_ready_s:.1f} s); "
        f"cache holds {results.scale_cache_objects:,.0f} Deployments",
        f"* RSS once ready: **{results.scale_rss_ready_mb:.0f} MB**; peak (VmHWM) after the reads below: "
        f"**{results.scale_rss_peak_mb:.0f} MB** (with 100 Deployments, after section 1-4: "
        f"{results.small_rss_mb:.0f} MB)",
    ]
    for page_size, listed in results.list_all.items():
        out.append(
            f"* ListDeployments over all pages of {page_size}: {listed.pages} pages, {listed.items:,} "
            f"Deployments in {listed.seconds * 1000:.0f} ms"
        )
    out += [
        "",
        f"GetReplicas (1,000 random Deployments of the {results.scale_objects:,}, round-robin) "
        "against the 100-Deployment case of section 1:",
        "",
    ]
    rows = []
    for concurrency, large in results.scale_load.items():
        small = results.load.get(("GetReplicas", concurrency), (None, None))[0]
        rows.append(
            [
                str(concurrency),
                f"{small.rps:,.0f}" if small else "n/a",
                _ms(small.p50_ms) if small else "n/a",
                _ms(small.p99_ms) if small else "n/a",
                f"{large.rps:,.0f}",
                _ms(large.p50_ms),
                _ms(large.p99_ms),
            ]
        )
    n = f"{results.scale_objects:,}"
    out += _table(["c", "100: req/s", "100: p50", "100: p99", f"{n}: req/s", f"{n}: p50", f"{n}: p99"], rows)
    return out


def _render_watchers(results: Results) -> list[str]:
    w = results.watchers
    if w is None:
        return []
    p = w.propagation
    without = results.load.get(("GetReplicas", 16), (None, None))[0]
    gets = w.gets
    return [
        "",
        f"## 6. {w.streams:,} WatchReplicas streams",
        "",
        f"{w.streams - w.cluster_wide:,} streams each on one of {w.namespaces} namespaces (one Deployment each), "
        f"{w.cluster_wide} on all namespaces, over gRPC (100 streams per connection), while {w.rate:.0f} Deployments "
        f"per second were scaled through the apiserver for {w.seconds:.0f} s ({w.changes:,} changes), with ghz "
        "sending GetReplicas at c=16 meanwhile. Propagation: from just before the PATCH until each stream that must "
        "see the change received it.",
        "",
        *_table(
            ["", "value"],
            [
                ["deliveries", f"{len(p):,} ({w.missing:,} missing, {w.aborted} streams ended early)"],
                ["propagation p50 / p99 / worst", f"{_ms(p.p50)} / {_ms(p.p99)} / {_ms(p.worst)}"],
                [
                    "GetReplicas c=16 with the streams: req/s, p99, CPU µs/call",
                    f"{gets.rps:,.0f}, {_ms(gets.p99_ms)}, {gets.server_cpu_us:,.0f}" if gets else "-",
                ],
                [
                    "GetReplicas c=16 without (section 1): req/s, p99, CPU µs/call",
                    f"{without.rps:,.0f}, {_ms(without.p99_ms)}, {without.server_cpu_us:,.0f}" if without else "-",
                ],
                ["event-loop lag samples (every 10 ms)", f"{w.lag_samples:,}"],
                ["samples later than 20 ms", f"{w.lag_over_20ms:,}"],
            ],
        ),
    ]


def _render_profiles(results: Results) -> list[str]:
    out: list[str] = []
    if not results.profiles:
        return out
    out += [
        "",
        "## Profiles",
        "",
        "Taken because a target was missed: py-spy sampling the server during 8 s of the same load at c=16; "
        "shares are of the samples where a thread held the GIL. `Handle._run` on top of the stack is time spent in "
        "grpc's Cython layer (grpc.aio's own work, invisible to a Python profiler), called from the event loop.",
    ]
    for label, profile in results.profiles:
        out += ["", f"### {label}", ""]
        if isinstance(profile, str):
            out.append(profile)
            continue
        out.append(f"{profile.samples} samples; `{profile.command}`")
        out += [
            "",
            *_table(["self (top of stack)", "share"], [[f"`{n}`", f"{s:.1%}"] for n, s in profile.self_top]),
        ]
        out += [
            "",
            *_table(
                ["scalekeeper code, total (anywhere on the stack)", "share"],
                [[f"`{n}`", f"{s:.1%}"] for n, s in profile.total_top],
            ),
        ]
    return out


def _shown(argv: list[str], workdir: Path) -> str:
    return shlex.join(argv).replace(str(workdir), "$WORKDIR").replace(sys.executable, "python")


def render(results: Results, ghz: Ghz, invocation: str, workdir: Path) -> str:
    out: list[str] = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` ({invocation}) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
        f"in {results.elapsed_s / 60:.1f} minutes. Everything ran on one machine: the server (one Python process), "
        "the load generator (ghz, limited to 1 CPU), etcd and kube-apiserver. Targets are reported, never asserted.",
        "",
        "## Machine",
        "",
        *_table(["", ""], [[k, v] for k, v in results.machine.items()]),
        f"| load average at end | {results.load_average_end} |",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "wanted", "measured", ""],
            [[t.what, t.wanted, t.measured, "met" if t.met else "**missed**"] for t in results.targets],
        ),
        "",
        "## 1. Unary reads over mTLS (ghz)",
        "",
        "scalekeeper (`python -m scalekeeper`, default flags: INFO access log, controller on) beside the bare grpc.aio "
        "server of `scalekeeper_dev.bare_server` (same TLS settings, canned responses of the same shape), one "
        "connection; each figure is the fastest of `--repeat` runs (interleaved, ours then bare), since background "
        "load on a shared machine only slows runs down. ListDeployments asks for one page of 100.",
        "",
    ]
    rows = []
    for (method, concurrency), (ours, bare) in results.load.items():
        ratio = ours.rps / bare.rps if bare.rps else math.nan
        rows.append(
            [
                method,
                str(concurrency),
                f"{ours.rps:,.0f}",
                _ms(ours.p50_ms),
                _ms(ours.p99_ms),
                f"{bare.rps:,.0f}",
                _ms(bare.p50_ms),
                _ms(bare.p99_ms),
                f"{ratio:.0%}",
                f"{ours.server_cpu_us:,.0f}",
                f"{bare.server_cpu_us:,.0f}",
                f"{ours.server_cpu_us / bare.server_cpu_us:.2f}x",
                _statuses(ours),
            ]
        )
    header = ["method", "c", "req/s", "p50", "p99", "bare req/s", "bare p50", "bare p99", "ratio"]
    out += _table([*header, "CPU µs/call", "bare CPU µs/call", "CPU vs bare", "errors"], rows)
    out += [
        "",
        "CPU µs/call: the server process's CPU time (user + system, `/proc/<pid>/stat`) over the run divided by OK "
        "calls; the lowest of the repeats. It is steadier than req/s on a shared machine, since time spent waiting "
        "for a core is not counted.",
    ]
    if results.quiet_log is not None:
        q = results.quiet_log
        out += [
            "",
            f"Same GetReplicas load at c=16 with `--log-level=WARNING` (no access log line per call): "
            f"{q.rps:,.0f} req/s, p50 {_ms(q.p50_ms)}, p99 {_ms(q.p99_ms)}.",
        ]
    out += ["", "## 2. apiserver requests caused by reads", ""]
    out.append(
        f"`apiserver_request_total` (the apiserver's /metrics, as admin) for resources "
        f"deployments, deploymentscales and horizontalpodautoscalers, before and after {results.reads_for_delta:,} "
        "read RPCs (8,000 GetReplicas, 2,000 ListDeployments)."
    )
    out.append("")
    if results.apiserver_delta:
        out += _table(
            ["resource", "verb", "delta"], [[r, v, f"{d:.0f}"] for (r, v), d in results.apiserver_delta.items()]
        )
        out += ["", "WATCH is counted when a watch ends: the server's reflectors renew theirs on their own schedule."]
    else:
        out.append("Delta: **0** requests, every verb.")
    if results.propagation is not None:
        p = results.propagation
        out += [
            "",
            "## 3. Watch propagation",
            "",
            f"{len(p.watch)} changes, one at a time: a Deployment scaled through the apiserver's /scale subresource "
            "(timed from just before the PATCH) until the new count arrived on a WatchReplicas stream, and until "
            "GetReplicas (polled every millisecond) returned it.",
            "",
            *_table(
                ["until visible in", "samples", "p50", "p99", "worst", "timeouts"],
                [
                    [label, str(len(s)), _ms(s.p50), _ms(s.p99), _ms(s.worst), str(s.timeouts)]
                    for label, s in (
                        ("WatchReplicas stream", p.watch),
                        ("GetReplicas", p.get),
                        ("(the PATCH itself returned)", p.apiserver_write),
                        ("WatchReplicas, timed from the PATCH's answer", p.watch_after_write),
                    )
                ],
            ),
        ]
    if results.reconcile is not None:
        r = results.reconcile
        out += [
            "",
            "## 4. Reconcile and drift revert",
            "",
            "Reconcile: SetReplicas until the apiserver's own watch of Deployments showed the new spec.replicas. "
            "Drift revert: a managed Deployment scaled directly through /scale until that watch showed it back at "
            "the desired count.",
            "",
            *_table(
                ["", "samples", "p50", "p99", "worst", "timeouts"],
                [
                    [label, str(len(s)), _ms(s.p50), _ms(s.p99), _ms(s.worst), str(s.timeouts)]
                    for label, s in (("reconcile", r.reconcile), ("drift revert", r.drift_revert))
                ],
            ),
        ]
    out += _render_scale(results)
    out += _render_watchers(results)
    out += _render_profiles(results)
    if results.notes:
        out += ["", "## Notes", "", *[f"* {note}" for note in results.notes]]
    out += [
        "",
        "## Commands",
        "",
        "```sh",
        "# $WORKDIR: a temporary directory (certificates, logs, profiles; --workdir keeps it)",
        f"# server (sections 1-4; 5 starts another alike)\n{_shown(results.server_argv, workdir)}",
        f"# bare grpcio server\n{_shown(results.bare_argv, workdir)}",
        "# load: $SCALEKEEPER and $BARE are localhost:<port> of the two servers, $CERTS their certificates;",
        "# each data file is a JSON array of requests, sent round-robin:",
        *[f"#   {name}: {what}" for name, what in ghz.data_files.items()],
        *ghz.commands,
        "```",
        "",
    ]
    return "\n".join(out)


def print_summary(results: Results) -> None:
    print("\n== targets ==")
    for t in results.targets:
        print(f"  {'ok    ' if t.met else 'MISSED'} {t.what}: {t.measured} (wanted {t.wanted})")
    print("\n== unary reads (scalekeeper vs bare grpcio) ==")
    print(f"  {'method':16} {'c':>3} {'req/s':>8} {'p50':>10} {'p99':>10} {'bare':>8} {'ratio':>6}")
    for (method, concurrency), (ours, bare) in results.load.items():
        ratio = ours.rps / bare.rps if bare.rps else math.nan
        print(
            f"  {method:16} {concurrency:>3} {ours.rps:>8,.0f} {_ms(ours.p50_ms):>10} {_ms(ours.p99_ms):>10} "
            f"{bare.rps:>8,.0f} {ratio:>6.0%}"
        )


# -- main --------------------------------------------------------------------------------------------


async def setup_small(kube: KubeClient) -> None:
    log("setup: namespaces and Deployments for sections 1-4")
    for namespace, names in (
        (SMALL_NAMESPACE, [f"deploy-{i:03d}" for i in range(100)]),
        (WATCH_NAMESPACE, [f"watched-{i:02d}" for i in range(20)]),
        (RECONCILE_NAMESPACE, ["warm-up", *[f"managed-{i:02d}" for i in range(20)]]),
    ):
        await bench_scale.create_namespace(kube, namespace)
        await bench_scale.create_deployments(kube, namespace, names)


async def phase_quiet_log(results: Results, ghz: Ghz, make_server: Any, duration: str, repeat: int) -> None:
    """The access log's share of the cost, measured rather than guessed."""
    log("1. GetReplicas at concurrency 16 without the access log")
    argv = results.server_argv
    quiet = make_server("quiet-log", "--log-level=WARNING")
    try:
        quiet.wait_ready()
        messages = _get_messages(SMALL_NAMESPACE, [f"deploy-{i:03d}" for i in range(100)])
        await _ghz(ghz, quiet.target, "GetReplicas", messages, concurrency=16, duration="2s", data_name="get-100")
        load = {"concurrency": 16, "duration": duration, "data_name": "get-100"}
        results.quiet_log = _best(
            [await _ghz(ghz, quiet.target, "GetReplicas", messages, **load) for _ in range(repeat)]
        )
    finally:
        quiet.stop()
        results.server_argv = argv  # the report shows the default flags


async def run(args: argparse.Namespace, plane: ControlPlane, workdir: Path, results: Results, ghz: Ghz) -> None:
    certs = ghz.certs
    kube = await connect(plane.kubeconfig)
    lease = f"bench-{secrets.token_hex(3)}"
    server_count = 0

    def make_server(label: str, *extra: str) -> Scalekeeper:
        nonlocal server_count
        server_count += 1
        server = Scalekeeper(
            plane.kubeconfig,
            certs,
            workdir / f"scalekeeper-{server_count}-{label}.log",
            (f"--lease-name={lease}", *extra),
        )
        results.server_argv = server.argv
        ghz.aliases[server.target] = "$SCALEKEEPER"
        return server.start()

    try:
        await setup_small(kube)

        server = make_server("small")
        bare = BareServer(certs, workdir)
        results.bare_argv = bare.argv
        ghz.aliases[bare.target] = "$BARE"
        try:
            results.small_ready_s = server.wait_ready()
            bare.start()
            await phase_load(results, ghz, server, bare, duration=args.duration, repeat=args.repeat)
        finally:
            bare.stop()
        try:
            await phase_apiserver_requests(results, plane, ghz, server)
            if args.watchers:
                await phase_watchers(
                    results, kube, ghz, server, streams=args.watchers, namespaces=args.watcher_namespaces
                )
            if not args.skip_latency:
                await phase_latencies(results, kube, server, certs, args.changes)
            results.small_rss_mb = rss_mib(server.pid)[1] / MB
            await profile_missed_targets(results, ghz, server, workdir)
        finally:
            server.stop()

        await phase_quiet_log(results, ghz, make_server, args.duration, args.repeat)

        if args.scale_namespaces:
            await phase_scale(
                results,
                kube,
                ghz,
                make_server,
                certs,
                namespaces=args.scale_namespaces,
                per_namespace=args.scale_per_namespace,
                duration=args.duration,
                repeat=args.repeat,
            )
    finally:
        await kube.close()


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        directory = Path(path).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="scalekeeper-bench-"))
    ok = False
    try:
        yield directory
        ok = True
    finally:
        if ok:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"logs kept in {directory}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scalekeeper_dev.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"), help="the Markdown report")
    parser.add_argument("--duration", default="10s", help="each ghz run (section 1 and 5)")
    parser.add_argument("--repeat", type=int, default=2, help="ghz runs per measurement; the fastest is reported")
    parser.add_argument("--changes", type=int, default=200, help="samples for sections 3 and 4")
    parser.add_argument("--scale-namespaces", type=int, default=100, help="section 5 (0 skips it)")
    parser.add_argument("--scale-per-namespace", type=int, default=100)
    parser.add_argument("--watchers", type=int, default=1000, help="section 6: concurrent WatchReplicas (0 skips)")
    parser.add_argument("--watcher-namespaces", type=int, default=100, help="section 6: namespaces watched")
    parser.add_argument("--skip-latency", action="store_true", help="skip sections 3 and 4")
    parser.add_argument("--workdir", help="keep logs, certificates and profiles here (default: a temp dir)")
    args = parser.parse_args(argv)
    invocation = shlex.join(["python", "-m", "scalekeeper_dev.bench", *(argv if argv is not None else sys.argv[1:])])

    started = time.perf_counter()
    tools = {name: toolchain.ensure(name) for name in ("ghz", "etcd", "kube-apiserver")}
    results = Results(machine=describe_machine(tools["ghz"], tools["kube-apiserver"], tools["etcd"]))
    with _workdir(args.workdir) as workdir:
        ghz = Ghz(tools["ghz"], Certs.create(workdir / "certs"), workdir / "ghz-data")
        log(f"starting etcd and kube-apiserver (workdir {workdir})")
        with ControlPlane(workdir / "control-plane") as plane:
            from kubernetes import config

            from scalekeeper_dev.crd import install_crd

            admin = config.new_client_from_config(config_file=str(plane.kubeconfig))
            try:
                install_crd(admin)
            finally:
                admin.close()
            asyncio.run(run(args, plane, workdir, results, ghz))
        results.elapsed_s = time.perf_counter() - started
        results.load_average_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
        evaluate(results)
        report = render(results, ghz, invocation, workdir)
        Path(args.output).write_text(report)
        print_summary(results)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
