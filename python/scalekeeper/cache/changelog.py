"""A bounded, versioned log of changes that any number of consumers read at their own pace.

The shape of the apiserver's watch cache history (``watch_cache_history.go``):
a ring buffer of the last ``capacity`` changes, each with a sequence number
that only grows. A consumer holds a cursor (the last sequence it read) and
reads forward; the writer never waits for a consumer, so a slow or stuck one
cannot hold up the cache or anybody else. A consumer whose cursor the ring has
already overwritten fell behind and gets ``FellBehind``: it must start over
from a fresh snapshot, which is what 410 Gone means to an apiserver client.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from scalekeeper.cache.waiters import Waiters

T = TypeVar("T")


class FellBehind(Exception):
    """The changes after the consumer's cursor are no longer in the ring."""


class ChangeLog(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ring: list[T | None] = [None] * capacity
        self.last_seq = 0  # sequence number of the newest change; 0 before the first
        self.closed = False
        self._waiters = Waiters()

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still in the ring."""
        return max(1, self.last_seq - self.capacity + 1)

    def append(self, change: T) -> int:
        self.last_seq += 1
        self._ring[self.last_seq % self.capacity] = change
        self._waiters.wake_all()
        return self.last_seq

    def read(self, cursor: int, limit: int) -> list[tuple[int, T]]:
        """Up to ``limit`` ``(seq, change)`` after ``cursor``, oldest first; ``FellBehind`` if lost."""
        if cursor + 1 < self.first_seq:
            raise FellBehind(f"change {cursor + 1} was overwritten; the log keeps the last {self.capacity}")
        end = min(self.last_seq, cursor + limit)
        ring, capacity = self._ring, self.capacity
        return [(seq, ring[seq % capacity]) for seq in range(cursor + 1, end + 1)]  # type: ignore[misc]

    async def wait_after(self, cursor: int) -> None:
        """Return once a change after ``cursor`` exists, or the log was closed."""
        while self.last_seq <= cursor and not self.closed:
            await self._waiters.wait()

    def close(self) -> None:
        """Wake every waiter for good; consumers check ``closed`` and end."""
        self.closed = True
        self._waiters.wake_all()
