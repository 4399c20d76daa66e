"""One shared cache per resource kind, for the API and the controller alike.

``ClusterCache`` runs a reflector per kind (per namespace when the server is
scoped to namespaces) and answers the two questions readiness asks: has every
kind been listed (synced), and is the apiserver reachable right now (healthy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from scalekeeper.cache.projections import DeploymentView, HpaView, Key, RawObject, ScaleView
from scalekeeper.cache.reflector import Reflector
from scalekeeper.cache.store import EventType, Store
from scalekeeper.kube.client import KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES, DEPLOYMENTS, HORIZONTAL_POD_AUTOSCALERS, Resource

log = logging.getLogger(__name__)


class ClusterCache:
    def __init__(
        self,
        kube: KubeClient,
        *,
        namespaces: Sequence[str] = (),
        watch_timeout_seconds: int = 240,
        watch_read_timeout_seconds: float = 300.0,
    ) -> None:
        self.deployments: Store[DeploymentView] = Store("deployments")
        self.scales: Store[ScaleView] = Store("deploymentscales")
        self.hpas: Store[HpaView] = Store("horizontalpodautoscalers")
        kinds: list[tuple[Resource, Store[Any], Callable[[RawObject], Any]]] = [
            (DEPLOYMENTS, self.deployments, DeploymentView.from_object),
            (DEPLOYMENT_SCALES, self.scales, ScaleView.from_object),
            (HORIZONTAL_POD_AUTOSCALERS, self.hpas, HpaView.from_object),
        ]
        self._reflectors: list[Reflector[Any]] = [
            Reflector(
                kube,
                resource,
                store,
                project,
                namespace=namespace,
                watch_timeout_seconds=watch_timeout_seconds,
                watch_read_timeout_seconds=watch_read_timeout_seconds,
                on_health_change=self._recount_health,
            )
            for resource, store, project in kinds
            for namespace in (namespaces or ("",))
        ]
        self._tasks: list[asyncio.Task[None]] = []
        # Every read asks ``healthy``: kept up to date when a reflector's health or task changes, not recomputed.
        self._healthy = False
        # Deployment key -> keys of the HPAs that scale it; kept by a store handler
        # so that the controller's and SetReplicas' look-up is O(1).
        self._hpas_by_target: dict[Key, set[Key]] = {}
        self.hpas.add_handler(self._index_hpa)

    @property
    def synced(self) -> bool:
        return all(reflector.listed.is_set() for reflector in self._reflectors)

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _recount_health(self, _ended: object = None) -> None:
        self._healthy = self._running and all(reflector.healthy for reflector in self._reflectors)

    @property
    def _running(self) -> bool:
        # A reflector loop ends only when cancelled; a task that is done anyway means a frozen cache.
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def serves(self, resource: Resource) -> bool:
        """False while the apiserver does not serve ``resource`` (a CRD that is not installed).

        Such a kind counts as synced and healthy with an empty store: no object
        of it exists, so the cache is right, and reads need not fail.
        """
        return not any(r.absent for r in self._reflectors if r.resource == resource)

    @property
    def problems(self) -> list[str]:
        """Why the cache is not healthy, one line per reflector that is not."""
        problems = [r.last_error or f"{r.name}: not listed yet" for r in self._reflectors if not r.healthy]
        problems += [f"{task.get_name()} ended" for task in self._tasks if task.done()]
        return problems

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(reflector.run(), name=f"reflector {reflector.name}") for reflector in self._reflectors
        ]
        for task in self._tasks:
            task.add_done_callback(_log_end)
            task.add_done_callback(self._recount_health)
        self._recount_health()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._recount_health()

    async def wait_synced(self) -> None:
        """Return once every kind has been listed; bound it with ``asyncio.timeout``."""
        await asyncio.gather(*(reflector.listed.wait() for reflector in self._reflectors))

    def hpa_targeting(self, key: Key) -> HpaView | None:
        """An HorizontalPodAutoscaler that scales the Deployment ``key``, if any."""
        hpa_keys = self._hpas_by_target.get(key)
        return self.hpas.get(min(hpa_keys)) if hpa_keys else None

    def _index_hpa(self, _event: EventType, old: HpaView | None, new: HpaView | None) -> None:
        if old is not None and old.target_deployment is not None:
            target = (old.namespace, old.target_deployment)
            self._hpas_by_target.get(target, set()).discard(old.key)
            if not self._hpas_by_target.get(target):
                self._hpas_by_target.pop(target, None)
        if new is not None and new.target_deployment is not None:
            self._hpas_by_target.setdefault((new.namespace, new.target_deployment), set()).add(new.key)


def _log_end(task: asyncio.Task[None]) -> None:
    # Reflector.run restarts itself on every Exception, so only a BaseException
    # (or a bug in that loop) ends it; /readyz reports it through ``healthy``.
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s ended; the cache no longer follows the cluster", task.get_name(), exc_info=task.exception())
