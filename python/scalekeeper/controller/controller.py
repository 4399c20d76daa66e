"""The controller: cache events -> work queue -> workers running ``Reconciler.sync``, while leading.

Every replica keeps its cache (the API serves from it), but only the leader
reconciles. Leadership is a phase: on winning, a fresh queue is filled with
every DeploymentScale key (level-triggered: whatever happened while another
replica led, one full pass fixes) and the workers start; on losing, the queue
is shut down and the workers are cancelled and awaited BEFORE the lease is
released, so two replicas never write at once.

Workers wait for the cache to be synced before their first sync: with a half
listed cache a Deployment that exists would look missing.

There is no periodic resync: the watches deliver every change, and a re-list
after a watch gap replays the differences as events (``Store.replace``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scalekeeper import metrics
from scalekeeper.cache.informers import ClusterCache
from scalekeeper.cache.projections import DeploymentView, HpaView, Key, ScaleView
from scalekeeper.cache.store import EventType
from scalekeeper.controller.events import EventRecorder
from scalekeeper.controller.fights import FightPolicy
from scalekeeper.controller.leader import LeaderElector
from scalekeeper.controller.reconciler import Reconciler
from scalekeeper.controller.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue
from scalekeeper.kube.client import KubeApiError, KubeClient

log = logging.getLogger(__name__)


class Controller:
    """Reconciles DeploymentScales; with an ``elector`` only while it holds the Lease.

    ``start`` returns at once (the campaign and the workers run as tasks);
    ``stop`` stops the workers, then releases the Lease. ``identity`` names
    this replica in Events (reportingInstance); it defaults to the elector's.
    """

    def __init__(
        self,
        kube: KubeClient,
        cache: ClusterCache,
        *,
        workers: int = 4,
        elector: LeaderElector | None = None,
        identity: str = "",
        backoff_base: float = 0.005,
        backoff_max: float = 60.0,
        fights: FightPolicy | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._cache = cache
        self._workers = workers
        self._elector = elector
        self._backoff = (backoff_base, backoff_max)
        instance = identity or (elector.identity if elector else "scalekeeper")
        self.reconciler = Reconciler(kube, cache, EventRecorder(kube, instance=instance), fights)
        self._queue: WorkQueue[Key] | None = None
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._election_task: asyncio.Task[None] | None = None
        self._remove_handlers: list[Any] = []
        self._running = False

    @property
    def is_leader(self) -> bool:
        """True while this replica's workers run (always, once started, without leader election)."""
        if self._elector is not None:
            return self._elector.is_leader
        return self._running

    @property
    def queue(self) -> WorkQueue[Key] | None:
        """The current leadership phase's queue (None while not leading); for tests and metrics."""
        return self._queue

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._remove_handlers = [
            self._cache.scales.add_handler(self._on_scale),
            self._cache.deployments.add_handler(self._on_deployment),
            self._cache.hpas.add_handler(self._on_hpa),
        ]
        if self._elector is None:
            await self._start_leading()
        else:
            self._election_task = asyncio.create_task(
                self._elector.run(self._start_leading, self._stop_leading), name="leader election"
            )
            self._election_task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        if not self._running:
            return
        if self._election_task is not None:
            # The elector stops the workers (on_stopped), then releases the Lease.
            self._election_task.cancel()
            try:
                await self._election_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:  # already logged by _log_crash
                log.debug("leader election had failed")
            self._election_task = None
        else:
            await self._stop_leading()
        for remove in self._remove_handlers:
            remove()
        self._remove_handlers = []
        self._running = False

    async def _start_leading(self) -> None:
        queue: WorkQueue[Key] = WorkQueue(ExponentialBackoff(*self._backoff))
        self._queue = queue
        # A full pass at the start of each leadership: events seen while not
        # leading were not queued. Without a synced cache, worker 0 does it later.
        synced = self._cache.synced
        if synced:
            self._prime(queue)
        self._worker_tasks = [
            asyncio.create_task(self._worker(queue, prime=i == 0 and not synced), name=f"controller worker {i}")
            for i in range(self._workers)
        ]
        log.info("controller started", extra={"workers": self._workers})

    async def _stop_leading(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            queue.shut_down()
        tasks, self._worker_tasks = self._worker_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.reconciler.forget_fights()
        if queue is not None:
            log.info("controller stopped")

    def _prime(self, queue: WorkQueue[Key]) -> None:
        for scale in list(self._cache.scales.values()):
            queue.add(scale.key)

    async def _worker(self, queue: WorkQueue[Key], *, prime: bool) -> None:
        if not self._cache.synced:
            await self._cache.wait_synced()
        if prime:
            self._prime(queue)
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            try:
                requeue_after = await self.reconciler.sync(key)
            except KubeApiError as error:
                result = "conflict" if error.is_conflict else "error"
                level = logging.INFO if error.is_conflict else logging.WARNING
                log.log(
                    level,
                    "sync failed; retrying",
                    extra={"key": f"{key[0]}/{key[1]}", "error": str(error), "retries": queue.num_requeues(key)},
                )
                metrics.RECONCILES.labels(result=result).inc()
                queue.add_rate_limited(key)
            except Exception:
                # A bug must not kill the worker (and with it the controller): log it and back off.
                log.exception("sync crashed; retrying", extra={"key": f"{key[0]}/{key[1]}"})
                metrics.RECONCILES.labels(result="crash").inc()
                queue.add_rate_limited(key)
            else:
                metrics.RECONCILES.labels(result="success").inc()
                queue.forget(key)
                if requeue_after is not None:
                    queue.add_after(key, requeue_after)
            finally:
                queue.done(key)

    # Store handlers: run on the event loop inside the reflector; they only enqueue.

    def _enqueue(self, key: Key) -> None:
        if self._queue is not None:
            self._queue.add(key)

    def _on_scale(self, _event: EventType, old: ScaleView | None, new: ScaleView | None) -> None:
        view = new or old
        if view is not None:
            self._enqueue(view.key)

    def _on_deployment(self, _event: EventType, old: DeploymentView | None, new: DeploymentView | None) -> None:
        view = new or old
        if view is not None and self._cache.scales.get(view.key) is not None:
            self._enqueue(view.key)

    def _on_hpa(self, _event: EventType, old: HpaView | None, new: HpaView | None) -> None:
        # Both targets: a retargeted HPA frees one Deployment and claims another.
        for view in (old, new):
            if view is not None and view.target_deployment is not None:
                self._enqueue((view.namespace, view.target_deployment))


def _log_crash(task: asyncio.Task[None]) -> None:
    # A campaign ends only by cancellation; anything else means this replica
    # silently stopped competing for leadership, which must not go unnoticed.
    if not task.cancelled() and task.exception() is not None:
        log.error("leader election stopped", exc_info=task.exception())
