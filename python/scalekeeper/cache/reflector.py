"""List, then watch, one resource kind into a Store; recover from every failure.

The loop is client-go's Reflector: a paginated list gives the full state and
a resourceVersion; a watch from that version streams every change after it,
with bookmarks so the version stays fresh while nothing changes. A watch ends
cleanly when its server-side timeout expires and is reopened from the last
version seen. A watch that goes silent for longer than the client read
timeout is stuck (frozen apiserver, half-open connection) and is treated as a
failure. ``410 Gone`` means the version was compacted away: re-list, and the
store's ``replace`` emits DELETED for whatever vanished meanwhile, so nothing
stale survives. Failures back off exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Generic

import aiohttp

from scalekeeper import metrics
from scalekeeper.cache.projections import RawObject
from scalekeeper.cache.store import EventType, Store, V
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import Resource

log = logging.getLogger(__name__)


# How often a kind the apiserver does not serve (a CRD not installed) is looked for again.
ABSENT_KIND_POLL_SECONDS = 5.0


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): the state must be re-listed."""


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
    ) -> None:
        self._kube = kube
        self._resource = resource
        self._store = store
        self._project = project
        self._namespace = namespace
        self._page_size = page_size
        self._watch_timeout = watch_timeout_seconds
        self._read_timeout = watch_read_timeout_seconds
        self._backoff = Backoff()
        self._path = resource.path(namespace)
        self.listed = asyncio.Event()  # set once the first list has filled the store
        self.healthy = False  # no failed list or watch since the last success
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
                version = await self._list()
                while True:
                    version = await self._watch(version)
            except WatchExpired:
                metrics.WATCH_RESTARTS.labels(self._resource.plural, "expired").inc()
                log.info("watch of %s expired (410 Gone); re-listing", self.name)
            except KindNotServed:
                # From a watch: re-list at once to learn whether the kind is gone. From a list: poll for it.
                if self.absent:
                    await asyncio.sleep(ABSENT_KIND_POLL_SECONDS)
            except (KubeApiError, aiohttp.ClientError, TimeoutError, ValueError, KeyError) as error:
                # ValueError/KeyError: a malformed line or object; re-listing recovers.
                self._fail(error)
                await asyncio.sleep(self._backoff.next_delay())

    def _fail(self, error: BaseException) -> None:
        reason = "timeout" if isinstance(error, TimeoutError) else "error"
        metrics.WATCH_RESTARTS.labels(self._resource.plural, reason).inc()
        self.healthy = False
        self.last_error = f"{self.name}: {error!r}"[:300]
        log.warning("list/watch of %s failed, retrying: %s", self.name, self.last_error)

    def _succeed(self) -> None:
        if not self.healthy:
            log.info("list/watch of %s is healthy", self.name)
        self.healthy = True
        self.last_error = ""
        self._backoff.reset()

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
            views.extend(self._project(item) for item in page.get("items") or ())
            continue_token = page["metadata"].get("continue")
            if not continue_token:
                break
            query = {"limit": self._page_size, "continue": continue_token}
        self._store.replace(views, self._namespace)
        self.listed.set()
        if self.absent:
            log.info("%s are served again", self._resource.plural)
            self.absent = False
        self._succeed()
        version: str = page["metadata"]["resourceVersion"]
        return version

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

    async def _watch(self, version: str) -> str:
        """Apply watch events after ``version``; return the last version seen when the watch ends cleanly."""
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self._watch_timeout,
        }
        try:
            response = await self._kube.stream(self._path, query, read_timeout=self._read_timeout)
        except KubeApiError as error:
            if error.is_gone:
                raise WatchExpired from error
            if error.is_not_found:
                raise KindNotServed from error
            raise
        self._succeed()
        try:
            async for line in response.content:
                version = self._handle(line, version)
        finally:
            response.release()
        return version

    def _handle(self, line: bytes, version: str) -> str:
        if not line.strip():
            return version
        event = json.loads(line)
        event_type, obj = event["type"], event["object"]
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpired(obj.get("message", ""))
            raise KubeApiError(int(obj.get("code", 0)), obj.get("reason", ""), obj.get("message", ""))
        new_version: str = obj["metadata"]["resourceVersion"]
        if event_type != "BOOKMARK":
            self._store.apply(EventType(event_type), self._project(obj))
        return new_version
