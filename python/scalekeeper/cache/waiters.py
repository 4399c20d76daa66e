"""Tasks waiting for a change, woken a batch per event-loop turn.

asyncio runs every callback that is ready in one turn of the loop before it
looks at timers or sockets again. One ``asyncio.Event.set()`` with a hundred
waiting watch streams makes a hundred task steps ready at once, each of which
serializes and writes a gRPC message: tens of milliseconds in which no other
call, health probe or timer is served. Waking ``WAKE_BATCH`` waiters per turn
keeps each turn short, at the price of a few turns' delay for the last ones.
"""

from __future__ import annotations

import asyncio
import contextlib

# Waiters woken per turn of the event loop; each then sends about one message (~0.1-0.2 ms here).
WAKE_BATCH = 16


class Waiters:
    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._futures)

    async def wait(self) -> None:
        """Return at the next ``wake_all``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        try:
            await future
        except asyncio.CancelledError:
            # A stream that ends while waiting (its client left) must not stay listed until the next change,
            # which in a quiet namespace may never come; one already being woken is skipped by ``_wake``.
            with contextlib.suppress(ValueError):
                self._futures.remove(future)
            raise

    def wake_all(self) -> None:
        """Wake everyone waiting now; later waiters wait for the next call."""
        if self._futures:
            futures, self._futures = self._futures, []
            _wake(futures, 0)


def _wake(futures: list[asyncio.Future[None]], start: int) -> None:
    for future in futures[start : start + WAKE_BATCH]:
        if not future.done():  # a waiter that was cancelled
            future.set_result(None)
    if start + WAKE_BATCH < len(futures):
        futures[0].get_loop().call_soon(_wake, futures, start + WAKE_BATCH)
