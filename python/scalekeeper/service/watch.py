"""One WatchReplicas stream: a consistent snapshot, paged, then the change log from where it was taken.

The stream notes the log's sequence number N, then pages through the cache
by key (``PAGE_SIZE`` Deployments per synchronous read, so neither a big
snapshot nor many new streams block the event loop or hold it in memory)
and sends each as ADDED. Paging takes a while, during which the log moves
on; to stay exactly-once the stream remembers, for each page, the last key
and the log sequence when it was read. A change after N is then sent only
if the page covering its key was read before it happened: otherwise the
page already showed its effect (apiserver watch caches get the same from a
copy-on-write snapshot; pages plus boundaries cost O(pages) instead).

A stream that falls behind the log's capacity (a client that stopped
reading) is cut off with ABORTED; nobody else is affected, since the log
never waits for a reader.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Callable
from types import TracebackType

from scalekeeper import metrics
from scalekeeper.cache.changelog import FellBehind
from scalekeeper.cache.projections import Key
from scalekeeper.errors import Code, ServiceError
from scalekeeper.service.feed import ReplicasChange, ReplicasFeed

PAGE_SIZE = 500
# Changes taken from the log per read; a stream sends them before reading again.
READ_BATCH = 500


class WatchStream:
    """Use as a context manager: leaving it releases the stream's slot."""

    def __init__(self, feed: ReplicasFeed, namespace: str, on_close: Callable[[WatchStream], None]) -> None:
        self._feed = feed
        self._namespace = namespace
        self._on_close = on_close
        self._closed = False
        metrics.WATCH_STREAMS.inc()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            metrics.WATCH_STREAMS.dec()
            self._on_close(self)

    async def changes(self) -> AsyncIterator[ReplicasChange]:
        """Every Deployment in scope as ADDED, then each change, until the feed closes."""
        log = self._feed.log
        cursor = log.last_seq
        boundary_keys: list[Key] = []  # last key of each page but the final one
        boundary_seqs: list[int] = []  # log sequence when each page was read
        after: Key | None = None
        while not log.closed:
            page, more = self._feed.deployments.page(self._namespace, after, PAGE_SIZE)
            # Built before the first yield: the page and its scales as of one instant.
            snapshot = [self._feed.current(deployment) for deployment in page]
            boundary_seqs.append(log.last_seq)
            for change in snapshot:
                yield change
            if not more:
                break
            after = page[-1].key
            boundary_keys.append(after)
        snapshot_end = boundary_seqs[-1] if boundary_seqs else cursor
        while not log.closed:
            try:
                batch = log.read(cursor, READ_BATCH)
            except FellBehind:
                metrics.WATCH_STREAMS_CUT_OFF.inc()
                raise ServiceError(
                    Code.ABORTED, "the watch fell too far behind; watch again to get the full state"
                ) from None
            if not batch:
                if self._namespace:
                    cursor = await self._feed.wait_in(self._namespace, cursor)
                else:
                    await log.wait_after(cursor)
                continue
            for seq, change in batch:
                cursor = seq
                if self._namespace and change.key[0] != self._namespace:
                    continue
                if seq <= snapshot_end and seq <= boundary_seqs[bisect.bisect_left(boundary_keys, change.key)]:
                    continue  # the page that covers this key was read after the change: already sent
                yield change
