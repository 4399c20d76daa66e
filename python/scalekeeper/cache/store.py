"""A keyed store of projections that tells its handlers about every change.

Everything runs on the one asyncio event loop, so the store needs no locks:
a reflector's ``apply``/``replace`` and a reader's ``get``/``page`` never
interleave. Keys are also kept in a ``SortedList`` (O(log n) insert, remove
and bisect), so that ``ListDeployments`` pages by key (stable under concurrent
changes) in O(log n + page) and the first list of 100,000 objects stays
n log n rather than quadratic.

Handlers run inline in the reflector, so each must be cheap and must not
block (enqueue a key, append to a change log). A handler that raises is
isolated: the others still run and the change is stored, then the store
raises ``HandlerFailed`` so that the reflector reports it (logged, counted,
/readyz failing) and restarts with backoff.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeAlias, TypeVar

from sortedcontainers import SortedList

from scalekeeper import metrics
from scalekeeper.cache.projections import Key

log = logging.getLogger(__name__)


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class View(Protocol):
    @property
    def key(self) -> Key: ...


V = TypeVar("V", bound=View)

# (event type, old view or None, new view or None); a handler must not block.
Handler: TypeAlias = Callable[[EventType, V | None, V | None], None]


class HandlerFailed(Exception):
    """A change handler raised; the change itself was stored and every other handler ran."""


class Store(Generic[V]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[Key, V] = {}
        self._sorted_keys: SortedList = SortedList()
        self._handlers: list[Handler[V]] = []

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> V | None:
        return self._items.get(key)

    def values(self) -> Iterator[V]:
        return iter(self._items.values())

    def add_handler(self, handler: Handler[V]) -> Callable[[], None]:
        """Register a change handler; returns the function that removes it."""
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    def page(self, namespace: str, after: Key | None, limit: int) -> tuple[list[V], bool]:
        """Up to ``limit`` views ordered by key, strictly after ``after``; and whether more follow.

        An empty ``namespace`` means all namespaces.
        """
        start: Key = after if after is not None else (namespace, "")
        keys = self._sorted_keys.irange(minimum=start, inclusive=(after is None, True))
        page: list[V] = []
        for key in itertools.islice(keys, limit + 1):
            if namespace and key[0] != namespace:
                break
            if len(page) == limit:
                return page, True
            page.append(self._items[key])
        return page, False

    def apply(self, event: EventType, view: V) -> None:
        """Record one watch event."""
        if event is EventType.DELETED:
            self._delete(view.key)
        else:
            self._put(view)

    def replace(self, views: Iterable[V], namespace: str = "") -> None:
        """Make the store hold exactly ``views`` (within ``namespace``, if given), as after a re-list.

        Objects that vanished while the watch was down get a DELETED event, so
        nobody keeps serving or acting on a stale object.
        """
        fresh = {view.key: view for view in views}
        failed: HandlerFailed | None = None
        for key in [k for k in self._items if (not namespace or k[0] == namespace) and k not in fresh]:
            try:
                self._delete(key)
            except HandlerFailed as error:
                failed = error
        for view in fresh.values():
            try:
                self._put(view)
            except HandlerFailed as error:
                failed = error
        if failed is not None:
            raise failed

    def _put(self, view: V) -> None:
        old = self._items.get(view.key)
        if old == view:
            return
        self._items[view.key] = view
        if old is None:
            self._sorted_keys.add(view.key)
        self._notify(EventType.ADDED if old is None else EventType.MODIFIED, old, view)

    def _delete(self, key: Key) -> None:
        old = self._items.pop(key, None)
        if old is None:
            return
        self._sorted_keys.remove(key)
        self._notify(EventType.DELETED, old, None)

    def _notify(self, event: EventType, old: V | None, new: V | None) -> None:
        failed: Exception | None = None
        for handler in list(self._handlers):
            try:
                handler(event, old, new)
            except Exception as error:
                failed = error
                metrics.CACHE_HANDLER_ERRORS.labels(self.kind).inc()
                log.exception("a %s change handler failed", self.kind, extra={"handler": repr(handler)[:200]})
        if failed is not None:
            raise HandlerFailed(f"a {self.kind} change handler raised {failed!r}"[:300]) from failed
