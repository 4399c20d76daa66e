"""Sampling profiles of the running server with py-spy, summarised for docs/benchmarks.md.

py-spy attaches to a live process (no instrumentation, so the profiled
throughput stays close to the real one) and is not a project dependency: it
is run with ``uv tool run`` from PyPI at a pinned version, only when a target
is missed. It samples only the thread holding the GIL (``--gil``): idle pool
threads waiting on a queue otherwise look busy. Its raw output (collapsed
stacks) is reduced here to the functions with the most samples on top of the
stack (self; time in a C extension such as grpc's Cython layer shows as the
Python function that called into it) and, for scalekeeper's own modules, the
share of samples each is anywhere on the stack (total).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalekeeper_dev import bench_reads
from scalekeeper_dev.bench_env import Scalekeeper
from scalekeeper_dev.bench_load import Ghz
from scalekeeper_dev.bench_report import SMALL_NAMESPACE, Results, get_messages, ghz_run, log, table

PY_SPY = "py-spy==0.4.3"
UV_VERSION = "0.13.9"
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def _uv() -> str | None:
    pinned = Path.home() / ".cache" / "scalekeeper" / f"uv-{UV_VERSION}" / "bin" / "uv"
    return shutil.which("uv") or (str(pinned) if pinned.exists() else None)


def py_spy_command() -> list[str] | None:
    """The command that runs py-spy, or None when neither py-spy nor uv is available."""
    found = shutil.which("py-spy")
    if found:
        return [found]
    uv = _uv()
    return [uv, "tool", "run", "--from", PY_SPY, "py-spy"] if uv else None


@dataclass
class Profile:
    samples: int
    self_top: list[tuple[str, float]]  # function, share of samples (0..1)
    total_top: list[tuple[str, float]]  # scalekeeper's functions only
    raw_file: Path
    command: str


def _function(frame: str) -> str:
    # "handler (scalekeeper/transport/grpc_api.py:61)" -> "handler (scalekeeper/transport/grpc_api.py)"
    frame = _FRAME_LINE.sub(")", frame)
    return frame.replace(str(Path.home()), "~").replace("/work/main/.venv/lib/python3.11/site-packages/", "")


def summarise(raw: str, top: int = 15) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        count = int(match["count"])
        frames = [_function(f) for f in match["stack"].split(";") if f]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for function in set(frames):
            if "(scalekeeper/" in function:
                total_counts[function] += count
    if samples == 0:
        return 0, [], []

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        # Frames on every stack (the entry point, the event loop's run) say nothing.
        ranked = [(name, count / samples) for name, count in counter.most_common() if count < 0.99 * samples]
        return ranked[:top]

    return samples, shares(self_counts), shares(total_counts)


def record(pid: int, seconds: int, output: Path) -> subprocess.Popen[bytes] | None:
    """Start py-spy on ``pid`` for ``seconds`` (raw collapsed stacks into ``output``); None if unavailable."""
    command = py_spy_command()
    if command is None:
        return None
    argv = [
        *command,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--gil",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    env = dict(os.environ)
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def finish(process: subprocess.Popen[bytes], output: Path, timeout: float = 120.0) -> Profile | str:
    """Wait for py-spy; the summary, or the reason there is none."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return "py-spy did not finish"
    if process.returncode != 0 or not output.exists():
        return f"py-spy failed ({process.returncode}): {stderr.decode(errors='replace')[-500:]}"
    samples, self_top, total_top = summarise(output.read_text(errors="replace"))
    return Profile(samples, self_top, total_top, output, " ".join(str(a) for a in process.args))  # type: ignore[union-attr]


# -- the report's "Profiles" section -------------------------------------------------------------------


async def measure_missed(results: Results, ghz: Ghz, server: Scalekeeper, workdir: Path) -> None:
    """Profile the server under the load of any section-1 target it missed (read-path CPU above all)."""
    ours, bare = results.get_replicas(16)
    if ours is not None and bare is not None and not all(t.met for t in bench_reads.targets(results)):
        await _profile_under_load(
            results, ghz, server, workdir, label="GetReplicas, c=16", method="GetReplicas", messages=get_messages()
        )
    if results.cpu_ratio("ListDeployments", 16) > bench_reads.TARGET_CPU_RATIO:
        await _profile_under_load(
            results,
            ghz,
            server,
            workdir,
            label="ListDeployments (page of 100), c=16",
            method="ListDeployments",
            messages=[{"namespace": SMALL_NAMESPACE, "page_size": 100}],
            data_name="list-page-100",
        )


async def _profile_under_load(
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
    process = record(server.pid, seconds, output)
    if process is None:
        results.profiles.append((label, "py-spy unavailable (neither py-spy nor uv on PATH)"))
        return
    log(f"profiling the server with py-spy during {method} ({label})")
    await asyncio.sleep(1.0)  # attach before the load starts
    await ghz_run(ghz, server.target, method, messages, concurrency=16, duration=f"{seconds}s", data_name=data_name)
    results.profiles.append((label, await asyncio.to_thread(finish, process, output)))


def render(results: Results) -> list[str]:
    if not results.profiles:
        return []
    out = [
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
        out += [f"{profile.samples} samples; `{profile.command}`", ""]
        out += table(["self (top of stack)", "share"], [[f"`{n}`", f"{s:.1%}"] for n, s in profile.self_top])
        out += [""]
        out += table(
            ["scalekeeper code, total (anywhere on the stack)", "share"],
            [[f"`{n}`", f"{s:.1%}"] for n, s in profile.total_top],
        )
    return out
