"""nix/dev-reloader.py (Tilt's dev entrypoint) never leaves a child behind a stop signal.

The races are driven deterministically: the stop signal is delivered (by
calling the handler) at the exact point under test, with real child
processes. The last test runs the script itself and sends it real signals.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from polling import eventually

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("dev_reloader", REPO / "nix" / "dev-reloader.py")
assert _spec is not None
assert _spec.loader is not None
reloader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reloader)

# Announces itself in <dir>/<pid>.ready, logs each SIGTERM to <dir>/<pid>.term, exits 0 on it.
CHILD = """
import os, signal, sys, time
from pathlib import Path
base = Path(sys.argv[1]) / str(os.getpid())
def stop(signum, frame):
    base.with_suffix(".term").open("a").write("TERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
base.with_suffix(".ready").write_text("")
while True:
    time.sleep(1)
"""


def child_command(directory: Path) -> list[str]:
    return [sys.executable, "-c", CHILD, str(directory)]


class Recorder:
    """Popen that keeps every child, and can deliver a stop signal inside a call (the race)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []
        self.signal_inside_start: int | None = None  # deliver during the n-th start (0-based)
        self.supervisor: reloader.Supervisor | None = None

    def __call__(self, command: list[str]) -> subprocess.Popen:
        child = subprocess.Popen(command)
        if self.signal_inside_start == len(self.children):
            # The child exists, the supervisor does not know it yet.
            assert self.supervisor is not None
            self.supervisor.on_signal(signal.SIGTERM)
        self.children.append(child)
        return child


@pytest.fixture
def recorder() -> Recorder:
    recorder = Recorder()
    yield recorder
    for child in recorder.children:
        if child.poll() is None:
            child.kill()
            child.wait()


def supervised(recorder: Recorder, tmp_path: Path) -> reloader.Supervisor:
    supervisor = reloader.Supervisor(child_command(tmp_path), popen=recorder)
    recorder.supervisor = supervisor
    return supervisor


def ready(tmp_path: Path, child: subprocess.Popen) -> bool:
    return (tmp_path / f"{child.pid}.ready").exists()


def assert_all_stopped(recorder: Recorder) -> None:
    for child in recorder.children:
        # Killed before its handler was installed (-SIGTERM), or by it (0): the signal arrived.
        assert child.wait(timeout=30) in (0, -signal.SIGTERM)


def test_signal_before_the_first_start_starts_nothing(recorder: Recorder, tmp_path: Path) -> None:
    supervisor = supervised(recorder, tmp_path)
    supervisor.on_signal(signal.SIGTERM)
    assert supervisor.start() is False
    assert recorder.children == []


def test_signal_while_the_first_child_starts_reaches_it(recorder: Recorder, tmp_path: Path) -> None:
    supervisor = supervised(recorder, tmp_path)
    recorder.signal_inside_start = 0
    assert supervisor.start() is True
    assert_all_stopped(recorder)
    assert supervisor.wait() in (0, 128 + signal.SIGTERM)


def test_signal_while_a_restart_starts_the_new_child_reaches_it(recorder: Recorder, tmp_path: Path) -> None:
    supervisor = supervised(recorder, tmp_path)
    supervisor.start()
    eventually(lambda: ready(tmp_path, recorder.children[0]), "the first child")
    recorder.signal_inside_start = 1
    assert supervisor.restart() is True
    assert len(recorder.children) == 2
    assert_all_stopped(recorder)
    # The restart's own SIGTERM reached the old child; the stop signal, the new one, once.
    new = recorder.children[1]
    if ready(tmp_path, new):
        assert (tmp_path / f"{new.pid}.term").read_text() == "TERM\n"


def test_signal_while_a_restart_waits_starts_no_new_child(recorder: Recorder, tmp_path: Path) -> None:
    supervisor = supervised(recorder, tmp_path)
    supervisor.start()
    old = recorder.children[0]
    eventually(lambda: ready(tmp_path, old), "the first child")
    wait = old.wait

    def signal_during_wait(timeout: float | None = None) -> int:
        supervisor.on_signal(signal.SIGTERM)
        return wait(timeout)

    old.wait = signal_during_wait  # type: ignore[method-assign]
    assert supervisor.restart() is False
    assert recorder.children == [old]
    assert supervisor.wait() == 0
    # The restart's SIGTERM and the stop signal are one signal to the child, not two.
    assert (tmp_path / f"{old.pid}.term").read_text() == "TERM\n"


def test_the_script_restarts_on_change_and_stops_on_sigterm(tmp_path: Path) -> None:
    sources, runs = tmp_path / "src", tmp_path / "runs"
    sources.mkdir()
    runs.mkdir()
    (sources / "app.py").write_text("x = 1\n")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "nix" / "dev-reloader.py"), "--watch", str(sources), "--", *child_command(runs)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = eventually(lambda: sorted(runs.glob("*.ready")), "the first child")
        (sources / "app.py").write_text("x = 2\n")
        pids = eventually(lambda: _started(runs) if len(_started(runs)) == 2 else None, "the restarted child")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "sources changed, restarting" in process.stderr.read()
        assert len(first) == 1
        for pid in pids:
            assert not _alive(pid), f"child {pid} outlived the reloader"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _started(runs: Path) -> list[int]:
    return [int(path.stem) for path in runs.glob("*.ready")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; its parent (the reloader) already exited.
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
