"""Restart a command when Python files under a directory change (Tilt dev image only).

Tilt's live_update copies edited sources into the running container; the
server then has to restart to load them. Tilt's own restart helper needs a
Docker build on top of the image, and a container restart would discard the
synced files, so this tiny supervisor, the dev image's entrypoint, polls the
tree and restarts its child in place. SIGTERM/SIGINT are forwarded so the
server's drain still runs when the pod stops.

A stop signal can land at any point: before the first child exists, while a
child is being started, or while a restart waits for the old child. Whatever
the point, the current child gets the signal exactly once and no new child is
started after it, so the pod never waits for SIGKILL. (As PID 1 in the
container, this process ignores signals it has no handler for, which is why
the handlers are installed before anything else.)

Standard library only: it runs on the image's interpreter before anything is
imported from the synced tree.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

POLL_SECONDS = 0.5
# A sync writes many files; wait until the tree has been quiet this long.
SETTLE_SECONDS = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def snapshot(root: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in root.rglob("*.py") if path.is_file()}


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold back the stop signals (in this process only) while the child is swapped."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Supervisor:
    """One child at a time; a stop signal reaches the current child and ends all restarts."""

    def __init__(self, command: Sequence[str], popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> None:
        self.command = list(command)
        self.popen = popen
        self.child: subprocess.Popen | None = None
        self.stop_signal: int | None = None
        self._signalled: subprocess.Popen | None = None

    def on_signal(self, signum: int, _frame: object = None) -> None:
        self.stop_signal = signum
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        child = self.child
        # Once per child: a second SIGTERM could cut the server's drain short.
        if child is not None and child is not self._signalled and child.poll() is None:
            self._signalled = child
            child.send_signal(signum)

    def start(self) -> bool:
        """Start the command, unless a stop was requested (then False)."""
        if self.stop_signal is not None:
            return False
        child = self.popen(self.command)
        with signals_blocked():
            self.child = child
            # A signal that landed while the child was starting reached the previous child or none.
            if self.stop_signal is not None:
                self._forward(self.stop_signal)
        return True

    def restart(self) -> bool:
        """Stop the current child and start a new one, unless a stop was requested (then False)."""
        child = self.child
        with signals_blocked():
            if self.stop_signal is not None:
                return False
            if child is not None and child.poll() is None:
                self._signalled = child
                child.terminate()
        if child is not None:
            # A stop signal during this wait is forwarded to the old child; start() then declines.
            child.wait()
        return self.start()

    def wait(self) -> int:
        """The child's exit status, shell style (128 + signal number when a signal ended it)."""
        assert self.child is not None
        code = self.child.wait()
        return 128 - code if code < 0 else code


def watch(supervisor: Supervisor, root: Path) -> int:
    if not supervisor.start():
        return 0
    seen = snapshot(root)
    changed_at: float | None = None
    while supervisor.stop_signal is None:
        # A child that crashed (say, on a syntax error just synced) waits for
        # the next change; exiting would make the kubelet restart the
        # container from the image and drop every synced file.
        time.sleep(POLL_SECONDS)
        current = snapshot(root)
        if current != seen:
            seen, changed_at = current, time.monotonic()
        if changed_at is not None and time.monotonic() - changed_at >= SETTLE_SECONDS:
            print("dev-reloader: sources changed, restarting", file=sys.stderr, flush=True)
            supervisor.restart()
            changed_at = None
    return supervisor.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    supervisor = Supervisor(command)
    for signum in STOP_SIGNALS:
        signal.signal(signum, supervisor.on_signal)
    return watch(supervisor, args.watch)


if __name__ == "__main__":
    sys.exit(main())
