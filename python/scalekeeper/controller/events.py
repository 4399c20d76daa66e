"""Kubernetes Events (events.k8s.io/v1) about DeploymentScales, for `kubectl describe` and `kubectl events`.

Events are a courtesy to humans, not state. ``record`` never waits and never
fails: it puts the Event on a bounded queue that one background task writes,
so a slow or failing events endpoint cannot stall a reconcile worker (and a
sync is never retried because of an Event: that would scale again, or loop).
When the queue is full the Event is dropped and counted.

Repeats are aggregated the way client-go's events ``EventBroadcaster`` does:
the same reason, action and note about the same object within
``SERIES_WINDOW`` become one Event whose ``series.count`` grows (a PATCH),
not a new Event each time; repeats that arrive while the first is still
queued only bump the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from scalekeeper import metrics
from scalekeeper.cache.projections import ScaleView
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES, EVENTS, FIELD_MANAGER

REPORTING_CONTROLLER = "scalekeeper.dev/controller"
# client-go's events library: isomorphic Events within 6 minutes form one series.
SERIES_WINDOW = datetime.timedelta(minutes=6)
QUEUE_SIZE = 1000
_MERGE_PATCH = "application/merge-patch+json"
_QUERY = {"fieldManager": FIELD_MANAGER}

log = logging.getLogger(__name__)


class EventReason:
    SCALED = "Scaled"  # the desired count was applied to the Deployment
    DRIFT_REVERTED = "DriftReverted"  # someone else changed the Deployment; scalekeeper put it back
    CONFLICT_WITH_FIELD_MANAGER = "ConflictWithFieldManager"  # Warning: a fight began (controller/fights.py)


def _micro_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Series:
    """One Event and its repeats: created once, then PATCHed with the count."""

    body: dict[str, Any]
    first_seen: datetime.datetime
    last_seen: datetime.datetime
    count: int = 1
    created: bool = False
    queued: bool = field(default=False)


class EventRecorder:
    def __init__(self, kube: KubeClient, *, instance: str, timeout: float = 5.0, queue_size: int = QUEUE_SIZE) -> None:
        self._kube = kube
        # reportingInstance is limited to 128 characters by validation.
        self._instance = instance[:128]
        self._timeout = timeout
        self._queue: asyncio.Queue[_Series] = asyncio.Queue(maxsize=queue_size)
        self._series: dict[tuple[str, str, str, str, str], _Series] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_forever(), name="event recorder")

    async def stop(self) -> None:
        """Stop writing; Events still queued are dropped (best effort, as ever)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def record(self, regarding: ScaleView, *, reason: str, action: str, note: str, warning: bool = False) -> None:
        """Queue one Event about ``regarding`` (a repeat joins its series); never waits.

        ``warning`` makes it a Warning Event, for what a human should act on (a fight over the count).
        """
        now = datetime.datetime.now(datetime.UTC)
        key = (regarding.namespace, regarding.name, reason, action, note[:1024])
        series = self._series.get(key)
        if series is None or now - series.first_seen > SERIES_WINDOW:
            self._forget_old(now)
            series = _Series(
                self._body(regarding, reason, action, note, now, warning=warning), first_seen=now, last_seen=now
            )
            self._series[key] = series
        else:
            series.count += 1
            series.last_seen = now
        if series.queued:
            return
        try:
            self._queue.put_nowait(series)
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.labels("queue_full").inc()
            log.debug("event queue full; dropping an event", extra={"reason": reason})
            return
        series.queued = True

    def _forget_old(self, now: datetime.datetime) -> None:
        for key in [k for k, s in self._series.items() if now - s.first_seen > SERIES_WINDOW and not s.queued]:
            del self._series[key]

    def _body(
        self, regarding: ScaleView, reason: str, action: str, note: str, now: datetime.datetime, *, warning: bool
    ) -> dict[str, Any]:
        return {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # client-go's naming: unique per object and instant, within the 253-character limit.
            "metadata": {"name": f"{regarding.name[:235]}.{time.time_ns():x}", "namespace": regarding.namespace},
            "eventTime": _micro_time(now),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance,
            "action": action,
            "reason": reason,
            "type": "Warning" if warning else "Normal",
            "note": note[:1024],
            "regarding": {
                "apiVersion": DEPLOYMENT_SCALES.api_version,
                "kind": DEPLOYMENT_SCALES.kind,
                "namespace": regarding.namespace,
                "name": regarding.name,
                "resourceVersion": regarding.resource_version,
            },
        }

    async def _write_forever(self) -> None:
        while True:
            series = await self._queue.get()
            series.queued = False
            try:
                await self._write(series)
            except KubeApiError as error:
                metrics.EVENTS_DROPPED.labels("error").inc()
                log.warning(
                    "recording event failed",
                    extra={
                        "event": series.body["metadata"]["name"],
                        "reason": series.body["reason"],
                        "error": str(error),
                    },
                )

    async def _write(self, series: _Series) -> None:
        metadata = series.body["metadata"]
        if not series.created:
            await self._kube.request(
                "POST", EVENTS.path(metadata["namespace"]), body=series.body, query=_QUERY, timeout=self._timeout
            )
            series.created = True
            if series.count == 1:
                return
        patch = {"series": {"count": series.count, "lastObservedTime": _micro_time(series.last_seen)}}
        await self._kube.request(
            "PATCH",
            f"{EVENTS.path(metadata['namespace'])}/{metadata['name']}",
            body=patch,
            query=_QUERY,
            content_type=_MERGE_PATCH,
            timeout=self._timeout,
        )
