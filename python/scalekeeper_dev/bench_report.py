"""What every ``make bench`` scenario shares: the results it fills in, targets, ghz runs, Markdown tables.

Each scenario module (``bench_reads``, ``bench_apiserver``, ``bench_changes``,
``bench_scale``, ``bench_watchers``, ``bench_profile``) measures into
``Results`` and renders its own section and targets from it; ``bench`` runs
them in order and writes the report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scalekeeper_dev.bench_env import cpu_seconds, metric_sum
from scalekeeper_dev.bench_load import Ghz, LoadResult

if TYPE_CHECKING:
    from scalekeeper_dev.bench_latency import PropagationResult, ReconcileResult
    from scalekeeper_dev.bench_profile import Profile
    from scalekeeper_dev.bench_scale import ScaleResult
    from scalekeeper_dev.bench_watchers import WatchersResult

# The 100 Deployments every unary-read scenario reads.
SMALL_NAMESPACE = "bench"
SMALL_NAMES = [f"deploy-{i:03d}" for i in range(100)]
MB = 1_000_000 / 1024 / 1024  # MiB per MB: targets are in MB


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
    # (method, concurrency) -> (scalekeeper, bare grpcio)
    load: dict[tuple[str, int], tuple[LoadResult, LoadResult]] = field(default_factory=dict)
    # (method, concurrency) -> each interleaved round's ratio of ours to bare CPU per call
    cpu_round_ratios: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    http_get: LoadResult | None = None
    # CPU ms per second each server uses with no call in flight (scalekeeper: cache, controller, health, timers).
    idle_cpu_ms_per_s: tuple[float, float] = (math.nan, math.nan)
    apiserver_delta: dict[tuple[str, str], float] = field(default_factory=dict)
    reads_for_delta: int = 0
    propagation: PropagationResult | None = None
    reconcile: ReconcileResult | None = None
    # The same two measurements on a control plane with kube-controller-manager, kube-scheduler and KWOK.
    cluster_propagation: PropagationResult | None = None
    cluster_reconcile: ReconcileResult | None = None
    small_ready_s: float = math.nan
    small_rss_mb: float = math.nan
    scale: ScaleResult | None = None
    watchers: WatchersResult | None = None
    profiles: list[tuple[str, Profile | str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_average_end: str = ""
    elapsed_s: float = 0.0

    def get_replicas(self, concurrency: int = 16) -> tuple[LoadResult | None, LoadResult | None]:
        return self.load.get(("GetReplicas", concurrency), (None, None))

    def cpu_ratio(self, method: str, concurrency: int) -> float:
        """Ours against bare in CPU per call: the median of the rounds' ratios (nan if not measured).

        Each round's two runs are seconds apart and share the machine's state: their ratio cancels what
        drifts between rounds, which comparing the lowest figure of each side would not.
        """
        ratios = self.cpu_round_ratios.get((method, concurrency))
        return statistics.median(ratios) if ratios else math.nan


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def get_messages(namespace: str = SMALL_NAMESPACE, names: list[str] = SMALL_NAMES) -> list[dict[str, Any]]:
    return [{"namespace": namespace, "name": name} for name in names]


async def ghz_run(ghz: Ghz, *args: Any, server_pid: int | None = None, **kwargs: Any) -> LoadResult:
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


def best(runs: list[LoadResult]) -> LoadResult:
    # Background load on a shared machine only ever slows a run down: the fastest is the least disturbed,
    # and so is the run with the least CPU per call (cache misses and preemption only add to it).
    fastest = max(runs, key=lambda r: r.rps)
    return dataclasses.replace(fastest, server_cpu_us=min(r.server_cpu_us for r in runs))


def ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def cpu(result: LoadResult | None) -> str:
    return "n/a" if result is None or math.isnan(result.server_cpu_us) else f"{result.server_cpu_us:,.0f} µs"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def statuses(result: LoadResult) -> str:
    errors = {k: v for k, v in result.statuses.items() if k != "OK"}
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "-"


@dataclass
class LagWindow:
    """A window of one of the server's event-loop lag histograms, between two scrapes."""

    samples: int
    over_20ms: int
    worst_bucket: str

    @classmethod
    def between(cls, name: str, before: dict, after: dict) -> LagWindow:  # type: ignore[type-arg]
        count = int(metric_sum(after, f"{name}_count") - metric_sum(before, f"{name}_count"))
        within = {
            float(dict(labels)["le"]): value - before.get((sample, labels), 0.0)
            for (sample, labels), value in after.items()
            if sample == f"{name}_bucket"
        }
        reached = min((bound for bound, n in within.items() if n >= count), default=math.inf)
        worst = f"<= {reached * 1000:.0f} ms" if reached != math.inf else "> 5 s"
        return cls(count, int(count - within.get(0.02, 0.0)), worst)
