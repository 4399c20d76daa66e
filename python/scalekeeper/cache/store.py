"""A keyed store of projections that tells its handlers about every change.

Everything runs on the one asyncio event loop, so the store needs no locks:
a reflector's ``apply``/``replace`` and a reader's ``get``/``page`` never
interleave. Keys are kept sorted as well, so that ``ListDeployments`` pages by
key (stable under concurrent changes) in O(log n + page) rather than sorting
the whole store on every call.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeAlias, TypeVar

from scalekeeper.cache.projections import Key


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


class Store(Generic[V]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[Key, V] = {}
        self._sorted_keys: list[Key] = []
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
        index = bisect.bisect_right(self._sorted_keys, start)
        page: list[V] = []
        for key in self._sorted_keys[index:]:
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
        for key in [k for k in self._items if (not namespace or k[0] == namespace) and k not in fresh]:
            self._delete(key)
        for view in fresh.values():
            self._put(view)

    def _put(self, view: V) -> None:
        old = self._items.get(view.key)
        if old == view:
            return
        self._items[view.key] = view
        if old is None:
            bisect.insort(self._sorted_keys, view.key)
        self._notify(EventType.ADDED if old is None else EventType.MODIFIED, old, view)

    def _delete(self, key: Key) -> None:
        old = self._items.pop(key, None)
        if old is None:
            return
        del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
        self._notify(EventType.DELETED, old, None)

    def _notify(self, event: EventType, old: V | None, new: V | None) -> None:
        for handler in list(self._handlers):
            handler(event, old, new)
