"""Throughput and latency of unary reads, measured with ghz (a Go load generator, so the client is not the bottleneck).

The Python client cannot produce more than a few thousand calls per second
itself, which would measure the client; ghz is the standard tool. It runs with
``--cpus`` limited so that on a small machine the server keeps a core.
Every command run is kept, to be printed into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalekeeper_dev.bench_env import PROTO_FILE, PROTO_ROOT, BenchError, Certs

SERVICE = "scalekeeper.v1.ReplicaService"


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    count: int
    statuses: dict[str, int]
    # Server CPU time over the run divided by OK calls; NaN when not measured.
    server_cpu_us: float = math.nan

    @property
    def ok_fraction(self) -> float:
        return self.statuses.get("OK", 0) / self.count if self.count else 0.0


class Ghz:
    def __init__(self, binary: Path, certs: Certs, data_dir: Path, *, cpus: int = 1, role: str = "reader") -> None:
        self.binary = binary
        self.certs = certs
        self.cpus = cpus
        self.role = role
        # For the report: each distinct command once, with symbolic names for ports, paths and data files.
        self.commands: list[str] = []
        self.data_files: dict[str, str] = {}  # symbolic name -> what it holds
        self.aliases: dict[str, str] = {str(binary): "ghz", str(certs.directory): "$CERTS", str(PROTO_ROOT): "proto"}
        self._data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)

    def _data_file(self, messages: list[dict[str, Any]]) -> Path:
        path = self._data_dir / f"data-{len(list(self._data_dir.iterdir()))}.json"
        # An array: ghz sends its messages round-robin, one per call.
        path.write_text(json.dumps(messages))
        return path

    def _record(self, argv: list[str], data_file: Path, data_name: str, messages: list[dict[str, Any]]) -> None:
        shown = shlex.join(argv).replace(str(data_file), f"{data_name}.json")
        for real, alias in self.aliases.items():
            shown = shown.replace(real, alias)
        if shown not in self.commands:
            self.commands.append(shown)
        first = json.dumps(messages[0], separators=(",", ":")) if messages else "-"
        self.data_files[f"{data_name}.json"] = f"{len(messages)} request(s), e.g. {first}"

    def run(
        self,
        target: str,
        method: str,
        messages: list[dict[str, Any]],
        *,
        concurrency: int,
        duration: str | None = "10s",
        total: int | None = None,
        data_name: str = "data",
    ) -> LoadResult:
        cert, key = self.certs.client(self.role)
        data_file = self._data_file(messages)
        argv = [
            str(self.binary),
            f"--proto={PROTO_FILE}",
            f"--import-paths={PROTO_ROOT}",
            f"--call={SERVICE}/{method}",
            f"--cacert={self.certs.ca_file}",
            f"--cert={cert}",
            f"--key={key}",
            f"--cpus={self.cpus}",
            f"--concurrency={concurrency}",
            "--connections=1",
            "--timeout=20s",
            "--format=json",
            f"--data-file={data_file}",
        ]
        if total is not None:
            argv.append(f"--total={total}")
        else:
            argv.append(f"--duration={duration}")  # ghz ignores --total when a duration is given
            # Calls still in flight when time is up are not failures of the server.
            argv.append("--duration-stop=ignore")
        argv.append(target)
        self._record(argv, data_file, data_name, messages)
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
        if result.returncode != 0 and not result.stdout.strip():
            raise BenchError(f"ghz failed ({result.returncode}): {result.stderr[-2000:]}")
        return parse_report(json.loads(result.stdout))


def parse_report(report: dict[str, Any]) -> LoadResult:
    """ghz's JSON report: durations are nanoseconds."""
    percentiles = {int(p["percentage"]): float(p["latency"]) / 1e6 for p in report.get("latencyDistribution") or []}
    statuses = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    return LoadResult(
        rps=float(report.get("rps", 0.0)),
        p50_ms=percentiles.get(50, float("nan")),
        p99_ms=percentiles.get(99, float("nan")),
        count=int(report.get("count", 0)),
        statuses=statuses,
    )
