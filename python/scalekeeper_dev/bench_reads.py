"""Section 1: unary reads under ghz, beside the bare grpc.aio server, with server CPU per call.

GetReplicas and ListDeployments (a page of 100) at concurrency 1, 16 and 64,
each run interleaved against scalekeeper and ``scalekeeper_dev.bare_server``
(same TLS, canned replies of the same shape), so that background load hits
both alike. Also: GetReplicas without the access log line, and the HTTP
mirror's GetReplicas (``bench_http``), both as server CPU per call.
"""

from __future__ import annotations

import asyncio
import math

from scalekeeper_dev.bench_env import BareServer, Scalekeeper, cpu_seconds
from scalekeeper_dev.bench_load import Ghz
from scalekeeper_dev.bench_report import (
    SMALL_NAMESPACE,
    Results,
    Target,
    best,
    cpu,
    get_messages,
    ghz_run,
    log,
    ms,
    statuses,
    table,
)

CONCURRENCIES = (1, 16, 64)
TARGET_RPS = 4000.0
TARGET_P99_MS = 10.0
TARGET_BARE_RATIO = 0.75
TARGET_CPU_RATIO = 1.15  # issue 14: server CPU per GetReplicas within 1.15x of bare grpcio
TARGET_HTTP_CPU_US = 250.0  # issue 14: the HTTP mirror's GetReplicas


async def measure(
    results: Results, ghz: Ghz, server: Scalekeeper, bare: BareServer, *, duration: str, repeat: int
) -> None:
    workloads = {
        "GetReplicas": ("get-100", get_messages()),
        "ListDeployments": ("list-page-100", [{"namespace": SMALL_NAMESPACE, "page_size": 100}]),
    }
    get_name, get_load = workloads["GetReplicas"]
    for target in (server.target, bare.target):  # warm-up: connections, caches, the interpreter's dicts
        await ghz_run(ghz, target, "GetReplicas", get_load, concurrency=16, duration="2s", data_name=get_name)
    results.idle_cpu_ms_per_s = (await _idle_cpu(server.pid), await _idle_cpu(bare.pid))
    for method, (data_name, messages) in workloads.items():
        for concurrency in CONCURRENCIES:
            log(f"1. {method} at concurrency {concurrency}")
            load = {"concurrency": concurrency, "duration": duration, "data_name": data_name}
            ours, theirs = [], []
            for _ in range(repeat):
                # Interleaved, so that a change in background load hits both sides alike.
                ours.append(await ghz_run(ghz, server.target, method, messages, server_pid=server.pid, **load))
                theirs.append(await ghz_run(ghz, bare.target, method, messages, server_pid=bare.pid, **load))
            results.load[(method, concurrency)] = (best(ours), best(theirs))
            results.cpu_round_ratios[(method, concurrency)] = [
                o.server_cpu_us / b.server_cpu_us for o, b in zip(ours, theirs, strict=True)
            ]


async def _idle_cpu(pid: int, seconds: float = 5.0) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)  # the window measured
    return (cpu_seconds(pid) - before) * 1000 / seconds


def targets(results: Results) -> list[Target]:
    ours, bare = results.get_replicas(16)
    if ours is None or bare is None:
        return []
    ratio = ours.rps / bare.rps if bare.rps else math.nan
    cpu_ratio = results.cpu_ratio("GetReplicas", 16)
    rounds = ", ".join(f"{r:.2f}" for r in results.cpu_round_ratios[("GetReplicas", 16)])
    found = [
        Target("GetReplicas req/s, c=16", f">= {TARGET_RPS:,.0f}", f"{ours.rps:,.0f}", ours.rps >= TARGET_RPS),
        Target("GetReplicas p99, c=16", f"< {TARGET_P99_MS:.0f} ms", ms(ours.p99_ms), ours.p99_ms < TARGET_P99_MS),
        Target(
            "GetReplicas vs bare grpcio, c=16",
            f">= {TARGET_BARE_RATIO:.0%}",
            f"{ratio:.0%}",
            ratio >= TARGET_BARE_RATIO,
        ),
        Target(
            "GetReplicas server CPU per call vs bare grpcio, c=16",
            f"<= {TARGET_CPU_RATIO:.2f}x",
            f"{cpu_ratio:.2f}x (rounds {rounds}; lowest {cpu(ours)} vs {cpu(bare)})",
            cpu_ratio <= TARGET_CPU_RATIO,
        ),
    ]
    if results.http_get is not None:
        used = results.http_get.server_cpu_us
        found.append(
            Target(
                "HTTP GetReplicas server CPU per call, c=16",
                f"< {TARGET_HTTP_CPU_US:.0f} µs",
                cpu(results.http_get),
                used < TARGET_HTTP_CPU_US,
            )
        )
    return found


def notes(results: Results) -> list[str]:
    """Observations the figures support by themselves."""
    found = []
    _, bare = results.get_replicas(16)
    if bare is not None and bare.rps < TARGET_RPS:
        found.append(
            f"The bare grpc.aio server itself peaks at {max(b.rps for _, b in results.load.values()):,.0f} req/s on "
            f"this machine: {TARGET_RPS:,.0f} req/s is out of reach here for any grpc.aio server, so the comparison "
            "with bare grpcio (req/s, and above all CPU per call) is what says how much scalekeeper adds."
        )
    return found


def render(results: Results) -> list[str]:
    out = [
        "",
        "## 1. Unary reads over mTLS (ghz)",
        "",
        "scalekeeper (`python -m scalekeeper`, default flags: INFO access log, controller on) beside the bare grpc.aio "
        "server of `scalekeeper_dev.bare_server` (same TLS settings, canned responses of the same shape), one "
        "connection; req/s and latencies are from the fastest of `--repeat` runs (interleaved, ours then bare), since "
        "background load on a shared machine only slows runs down. ListDeployments asks for one page of 100.",
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
                ms(ours.p50_ms),
                ms(ours.p99_ms),
                f"{bare.rps:,.0f}",
                ms(bare.p50_ms),
                ms(bare.p99_ms),
                f"{ratio:.0%}",
                cpu(ours),
                cpu(bare),
                f"{results.cpu_ratio(method, concurrency):.2f}x",
                statuses(ours),
            ]
        )
    header = ["method", "c", "req/s", "p50", "p99", "bare req/s", "bare p50", "bare p99", "ratio"]
    out += table([*header, "CPU/call", "bare CPU/call", "CPU vs bare", "errors"], rows)
    out += [
        "",
        "CPU/call: the server process's CPU time (user + system, `/proc/<pid>/stat`) over the run divided by OK "
        "calls; the lowest of the repeats. It is steadier than req/s on a shared machine, since time spent waiting "
        "for a core is not counted. CPU vs bare: the median over the repeats of each round's ratio (ours, then bare "
        "seconds later), which cancels the drift between rounds that the two lowest figures would not. CPU/call "
        "includes what each server does with no call in flight: "
        f"{results.idle_cpu_ms_per_s[0]:.1f} ms of CPU per second for scalekeeper (cache, controller and Lease, "
        f"health, timers), {results.idle_cpu_ms_per_s[1]:.1f} ms for the bare server, measured over 5 s idle.",
    ]
    if results.http_get is not None:
        h = results.http_get
        out += [
            "",
            f"The HTTP mirror's GetReplicas (`bench_http`: 16 keep-alive HTTPS/1.1 connections, one request in flight "
            f"each, from a separate process): {h.rps:,.0f} req/s, p50 {ms(h.p50_ms)}, p99 {ms(h.p99_ms)}, "
            f"**{cpu(h)}** server CPU per call ({statuses(h)} errors).",
        ]
    return out
