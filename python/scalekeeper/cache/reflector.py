"""List, then watch, one resource kind into a Store; recover from every failure.

The loop is client-go's Reflector. The full state comes from a streaming
list (KEP-3157, as client-go's reflector gets it): one watch that sends every
object as ADDED, a bookmark marked ``k8s.io/initial-events-end``, and then
the changes. The apiserver encodes objects while this process decodes them;
a paginated list is a round trip per page with one side idle, most of the
start-up time at 100,000 Deployments. An apiserver that refuses it (older,
or the feature off) gets a paginated list and a watch from its version.
Bookmarks keep the version fresh while nothing changes. A watch ends
cleanly when its server-side timeout expires and is reopened from the last
version seen. A watch that goes silent for longer than the client read
timeout is stuck (frozen apiserver, half-open connection) and is treated as a
failure; so is one that the apiserver (or a proxy) closes within
``min_watch_seconds`` without a single event, as client-go does, or reopening
it would be a tight loop. ``410 Gone`` means the version was compacted away:
re-list, and the store's ``replace`` emits DELETED for whatever vanished
meanwhile, so nothing stale survives. Failures back off exponentially with
jitter.

Anything else that escapes (a store handler that raised, a bug) is logged
with its traceback, turns the reflector unhealthy (so /readyz fails) and
restarts it from a fresh list after the same backoff: the loop itself never
ends until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Generic, NoReturn

from scalekeeper import metrics
from scalekeeper.cache.projections import RawObject
from scalekeeper.cache.store import EventType, Store, V
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import Resource
from scalekeeper.kube.watch import watch

log = logging.getLogger(__name__)

# client-go's reflector treats a watch that ends sooner than this with no event as an error.
MIN_WATCH_SECONDS = 1.0

# The annotation on the bookmark that ends a streaming list's initial events.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# What an apiserver answers a streaming list it does not serve with (Invalid, or BadRequest).
STREAMING_LIST_REFUSED = frozenset({400, 422})

# How often a kind the apiserver does not serve (a CRD not installed) is looked for again.
ABSENT_KIND_POLL_SECONDS = 5.0


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): the state must be re-listed."""


class WatchClosedEarly(Exception):
    """The watch ended at once without an event: back off before reopening it."""


class MalformedObject(Exception):
    """An object the projection cannot read: re-listing gives the apiserver's current copy."""


class InitialEventsIncomplete(Exception):
    """A streaming list ended before the bookmark that marks the end of its initial events."""


class KindNotServed(Exception):
    """The apiserver answered 404 for the collection: the kind does not exist (for a CRD: not installed)."""


class Backoff:
    """Exponential backoff with jitter: ``base * 2**n`` capped, half of it randomised."""

    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base, self.cap = base, cap
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self._failures)
        self._failures += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Reflector(Generic[V]):
    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        store: Store[V],
        project: Callable[[RawObject], V],
        *,
        namespace: str = "",
        page_size: int = 500,
        watch_timeout_seconds: int = 240,
        watch_read_timeout_seconds: float = 300.0,
        min_watch_seconds: float = MIN_WATCH_SECONDS,
        on_health_change: Callable[[], None] = lambda: None,
        streaming_list: bool = True,
    ) -> None:
        self._kube = kube
        self._resource = resource
        self._store = store
        self._project = project
        self._namespace = namespace
        self._page_size = page_size
        self._watch_timeout = watch_timeout_seconds
        self._read_timeout = watch_read_timeout_seconds
        self._min_watch_seconds = min_watch_seconds
        self._backoff = Backoff()
        self._path = resource.path(namespace)
        self.listed = asyncio.Event()  # set once the first list has filled the store
        self.healthy = False  # no failed list or watch since the last success; implies listed
        self._on_health_change = on_health_change
        self._streaming_list = streaming_list  # False: paginated lists (also once the apiserver refused one)
        self.absent = False  # the last list found the kind not served: the store is empty, and that is the truth
        self.last_error = "not listed yet"

    @property
    def resource(self) -> Resource:
        return self._resource

    @property
    def name(self) -> str:
        return f"{self._resource.plural} in {self._namespace or 'all namespaces'}"

    async def run(self) -> None:
        """Keep the store in step with the apiserver until cancelled."""
        while True:
            try:
                version = await self._watch(None) if self._streaming_list else await self._list()
                while True:
                    version = await self._watch(version)
            except WatchExpired:
                metrics.WATCH_RESTARTS.labels(self._resource.plural, "expired").inc()
                log.info("watch of %s expired (410 Gone); re-listing", self.name)
                continue
            except KindNotServed:
                # From a watch: re-list at once to learn whether the kind is gone. From a list: poll for it.
                if self.absent:
                    await asyncio.sleep(ABSENT_KIND_POLL_SECONDS)
                continue
            except (KubeApiError, TimeoutError, MalformedObject, WatchClosedEarly, InitialEventsIncomplete) as error:
                self._fail(error)
            except Exception as error:
                self._fail(error, unexpected=True)
            await asyncio.sleep(self._backoff.next_delay())

    def _fail(self, error: BaseException, *, unexpected: bool = False) -> None:
        if unexpected:
            reason = "crash"
        elif isinstance(error, (WatchClosedEarly, InitialEventsIncomplete)):
            reason = "closed_early"
        else:
            reason = "timeout" if isinstance(error, TimeoutError) else "error"
        metrics.WATCH_RESTARTS.labels(self._resource.plural, reason).inc()
        if self.healthy:
            self.healthy = False
            self._on_health_change()
        self.last_error = f"{self.name}: {error!r}"[:300]
        if unexpected:
            log.error("list/watch of %s crashed; restarting with backoff", self.name, exc_info=error)
        else:
            log.warning("list/watch of %s failed, retrying: %s", self.name, self.last_error)

    def _succeed(self) -> None:
        self.last_error = ""
        if not self.healthy:
            log.info("list/watch of %s is healthy", self.name)
            self.healthy = True
            self._on_health_change()

    def _view(self, obj: RawObject) -> V:
        try:
            return self._project(obj)
        except (KeyError, ValueError, TypeError) as error:
            raise MalformedObject(f"{error!r} in {str(obj)[:200]}") from error

    async def _list(self) -> str:
        views: list[V] = []
        query: dict[str, str | int | bool] = {"limit": self._page_size}
        while True:
            try:
                page = await self._kube.request("GET", self._path, query=query, timeout=60.0)
            except KubeApiError as error:
                if error.is_gone and "continue" in query:
                    # The continue token expired mid-list: start over from a fresh snapshot.
                    views, query = [], {"limit": self._page_size}
                    continue
                if error.is_not_found:
                    raise self._not_served() from error
                raise
            views.extend(self._view(item) for item in page.get("items") or ())
            continue_token = page["metadata"].get("continue")
            if not continue_token:
                break
            query = {"limit": self._page_size, "continue": continue_token}
        self._filled(views)
        version: str = page["metadata"]["resourceVersion"]
        return version

    def _filled(self, views: list[V]) -> None:
        """The full state is known: the store holds exactly it from now on."""
        self._store.replace(views, self._namespace)
        self.listed.set()
        if self.absent:
            log.info("%s are served again", self._resource.plural)
            self.absent = False
        self._succeed()

    def _initial_event(self, initial: list[V], event_type: str, obj: RawObject) -> list[V] | None:
        """Collect one of a streaming list's initial events; None once they are complete and stored."""
        if event_type != "BOOKMARK":
            initial.append(self._view(obj))
            return initial
        if (obj["metadata"].get("annotations") or {}).get(INITIAL_EVENTS_END) != "true":
            return initial
        self._filled(initial)
        return None

    def _raise_watch_failure(self, error: KubeApiError, *, streaming_list: bool) -> NoReturn:
        if error.is_gone:
            raise WatchExpired(error.message) from error
        if error.is_not_found:
            # From a streaming list, the kind is absent: a state. From a watch: re-list to find out.
            raise (self._not_served() if streaming_list else KindNotServed()) from error
        raise error

    def _not_served(self) -> KindNotServed:
        """The list found no such kind: nothing of it exists, which is a state, not a failure."""
        self._store.replace([], self._namespace)
        self.listed.set()
        if not self.absent:
            log.warning(
                "the apiserver does not serve %s (CRD not installed?); looking again every %.0fs",
                self._resource.plural,
                ABSENT_KIND_POLL_SECONDS,
            )
            self.absent = True
        self._succeed()
        return KindNotServed()

    async def _watch(self, version: str | None) -> str:
        """Apply watch events after ``version``; return the last version seen when the watch ends cleanly.

        ``version`` None is a streaming list: the initial ADDED events fill the
        store at once, as a list would, when their closing bookmark arrives.
        """
        query: dict[str, str | int | bool] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self._watch_timeout,
        }
        initial: list[V] | None = None
        if version is None:
            # No resourceVersion: a consistent read, as a list without one would be.
            query |= {"sendInitialEvents": True, "resourceVersionMatch": "NotOlderThan"}
            initial = []
        else:
            query["resourceVersion"] = version
        started, events = time.monotonic(), 0
        try:
            async for event_type, obj in watch(self._kube, self._path, query, read_timeout=self._read_timeout):
                events += 1
                version = obj["metadata"]["resourceVersion"]
                if initial is not None:
                    initial = self._initial_event(initial, event_type, obj)
                    if initial is None:
                        # The state is stored; from here on this is an ordinary watch, judged as one.
                        started, events = time.monotonic(), 0
                    continue
                if events == 1:
                    # An open watch that delivers is what proves the apiserver healthy again.
                    self._succeed()
                    self._backoff.reset()
                if event_type != "BOOKMARK":
                    self._store.apply(EventType(event_type), self._view(obj))
        except KubeApiError as error:
            if initial is not None and events == 0 and error.status in STREAMING_LIST_REFUSED:
                log.info("the apiserver refused a streaming list of %s (%s); listing by pages", self.name, error)
                self._streaming_list = False
                return await self._list()
            self._raise_watch_failure(error, streaming_list=initial is not None)
        if initial is not None:
            raise InitialEventsIncomplete(f"the streaming list ended after {events} events, before its last one")
        if events == 0:
            if time.monotonic() - started < self._min_watch_seconds:
                raise WatchClosedEarly(f"the watch ended after {time.monotonic() - started:.3f} s with no event")
            self._succeed()
            self._backoff.reset()
        assert version is not None  # a streaming list that ends set it (or raised above)
        return version
