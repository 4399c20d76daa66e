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

import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

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
