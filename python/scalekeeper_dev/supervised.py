"""Supervised child processes: one process group each, nothing left behind.

Stray processes are the classic failure of a harness that runs servers as
children, so each child runs in its own process group (a Ctrl-C at the
terminal reaches only the parent, which then tears down in order), gets
``PR_SET_PDEATHSIG`` (killed if the parent dies, even by SIGKILL), logs to a
file of its own, and is stopped by its owner's ``stop()``, by an ``atexit``
hook, and on SIGTERM/SIGHUP (turned into ``KeyboardInterrupt`` so that
``finally`` blocks and fixture teardown run).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


class ControlPlaneError(RuntimeError):
    pass


class ChildExited(ControlPlaneError):
    """A component exited when it should be running."""


def free_port() -> int:
    """A TCP port free on loopback right now (another process may still take it: see ``start``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent_preexec(parent_pid: int) -> Callable[[], None]:
    """Return a ``preexec_fn`` making the child die with its parent (Linux only)."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork() and prctl(): then no signal comes.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(eq=False)  # hashable by identity: a key of wait_ready's checks
class SupervisedChild:
    """One supervised child process, restartable with the same arguments."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    started_at: float = 0.0  # time.monotonic() of the last start()
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.alive:
            raise ControlPlaneError(f"{self.name} is already running (pid {self.pid})")
        self._log = self.log_path.open("ab")
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the
        # process: only the main thread lives as long as the process, so other
        # threads rely on stop()/atexit alone.
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = die_with_parent_preexec(os.getpid()) if on_main_thread else None
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=preexec,  # noqa: PLW1509 -- deliberate, see above
            close_fds=True,
        )
        self.started_at = time.monotonic()
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            code = self.process.returncode if self.process is not None else None
            raise ChildExited(
                f"{self.name} exited (code {code}); last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def signal(self, signum: int) -> None:
        if self.alive and self.process is not None:
            self.process.send_signal(signum)

    def pause(self) -> None:
        self.check_alive()
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        """SIGTERM (or SIGKILL), wait, then SIGKILL the whole process group."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                if self.paused:
                    self.resume()  # a stopped process cannot act on SIGTERM
                process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=timeout)
            # Anything the child left in its group goes too (its pgid is its pid).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.paused = False


def wait_ready(
    checks: Mapping[SupervisedChild, Callable[[], bool]], timeout: float, poll_interval: float = 0.1
) -> dict[str, float]:
    """Poll each child's readiness check until all pass; seconds from each child's start to ready, by name.

    Fails fast when a child exits, and with the log tail of the first child not
    ready at the deadline.
    """
    pending = dict(checks)
    ready_after: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for child, ready in list(pending.items()):
            child.check_alive()
            if ready():
                ready_after[child.name] = time.monotonic() - child.started_at
                del pending[child]
        if not pending:
            break
        if time.monotonic() > deadline:
            child = next(iter(pending))
            raise ControlPlaneError(
                f"{child.name} not ready after {timeout}s; last lines of {child.log_path}:\n{tail(child.log_path)}"
            )
        time.sleep(poll_interval)
    return ready_after


_LIVE: set[Stoppable] = set()
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def register(owner: Stoppable) -> None:
    """Stop ``owner`` at interpreter exit (and on SIGTERM/SIGHUP) unless it was stopped before."""
    _install_process_hooks()
    with _LIVE_LOCK:
        _LIVE.add(owner)


def unregister(owner: Stoppable) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(owner)


def _stop_all_live() -> None:
    with _LIVE_LOCK:
        owners = list(_LIVE)
    for owner in owners:
        with contextlib.suppress(Exception):
            owner.stop()


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def _install_process_hooks() -> None:
    """atexit always; SIGTERM/SIGHUP handlers only where nobody else installed one."""
    global _HOOKS_INSTALLED  # noqa: PLW0603 -- once per process
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_stop_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _raise_keyboard_interrupt)
