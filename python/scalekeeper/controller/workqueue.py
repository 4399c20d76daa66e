"""A rate-limited work queue of keys, with client-go's semantics, for asyncio.

Why not an ``asyncio.Queue``: a reconciler is level-triggered, so ten events
for one key while it waits must cost one sync, not ten (de-duplication), and
one key must never be synced by two workers at once (two concurrent syncs of
one DeploymentScale would race each other's writes). client-go solves both
with a *dirty* set (keys waiting) and a *processing* set (keys being synced):
a key added while it is processing is only marked dirty and is queued again
when its worker calls ``done``.

Failures are retried with a per-key exponential backoff (``add_rate_limited``)
that ``forget`` resets after a success, so one broken object backs off to
``max_delay`` without slowing down the others.

Everything runs on the one event loop: no locks, only futures to park idle workers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class QueueShutDown(Exception):
    """Raised by ``get`` once the queue is shut down: the worker should exit."""


class ExponentialBackoff(Generic[T]):
    """Per-item delay ``base_delay * 2**failures``, capped at ``max_delay``."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 60.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        """The delay before the next retry of ``item``; counts one more failure."""
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        # Cap the exponent too: 2**10000 is a float overflow, not just a long wait.
        return min(self.max_delay, self.base_delay * 2 ** min(failures, 64))

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def failures(self, item: T) -> int:
        return self._failures.get(item, 0)


class WorkQueue(Generic[T]):
    """De-duplicating FIFO of keys with delayed and rate-limited adds.

    Contract for a worker: ``item = await get()``, sync it, then ``forget(item)``
    on success or ``add_rate_limited(item)`` on failure, and ALWAYS ``done(item)``.

    ``shut_down`` drops pending and delayed items and makes every ``get`` raise
    ``QueueShutDown``: unlike client-go we do not drain, because the syncs are
    level-triggered and whoever runs the controller next starts from a full
    re-list anyway.
    """

    def __init__(self, backoff: ExponentialBackoff[T] | None = None) -> None:
        self._backoff: ExponentialBackoff[T] = backoff if backoff is not None else ExponentialBackoff()
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiters: list[asyncio.Future[None]] = []
        # item -> (due time on the loop clock, timer); only the earliest add_after is kept.
        self._delayed: dict[T, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        """Items waiting to be handed out (not counting processing or delayed ones)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing(self) -> int:
        return len(self._processing)

    @property
    def delayed(self) -> int:
        return len(self._delayed)

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            # Its worker re-queues it on done(): never two workers on one key.
            return
        self._queue.append(item)
        self._wake()

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed (at once if ``delay`` <= 0)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._delayed.get(item)
        if pending is not None:
            if pending[0] <= due:
                return  # an earlier retry is already scheduled
            pending[1].cancel()
        self._delayed[item] = (due, loop.call_at(due, self._fire, item))

    def add_rate_limited(self, item: T) -> None:
        """Retry ``item`` after its exponential backoff."""
        self.add_after(item, self._backoff.when(item))

    def forget(self, item: T) -> None:
        """Reset ``item``'s backoff (call after a successful sync)."""
        self._backoff.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._backoff.failures(item)

    async def get(self) -> T:
        """The next item; marks it processing until ``done``. Raises ``QueueShutDown``."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if self._shutting_down:
            raise QueueShutDown
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        """Mark ``item`` finished; if it was added meanwhile, queue it again."""
        self._processing.discard(item)
        if item in self._dirty and not self._shutting_down:
            self._queue.append(item)
            self._wake()

    def shut_down(self) -> None:
        self._shutting_down = True
        for _, timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        self._queue.clear()
        self._dirty.clear()
        self._wake()

    def _fire(self, item: T) -> None:
        self._delayed.pop(item, None)
        self.add(item)

    def _wake(self) -> None:
        # Wake every parked worker: each re-checks the queue, and a worker
        # cancelled right after being woken cannot swallow the only wake-up.
        # With a handful of workers the herd is tiny.
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
