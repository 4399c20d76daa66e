"""sync(key): make one Deployment's spec.replicas match its DeploymentScale, and say so in the status.

Reads come only from the shared cache; the two writes (the Deployment's
``/scale`` and the DeploymentScale's ``/status``) carry the cached
``resourceVersion`` as a precondition. A 409 therefore means "the cache was
behind": the sync raises, the work queue retries it with backoff, and by then
the watch has delivered the newer object. Nothing is ever overwritten blindly.

A sync that finds nothing to change writes nothing: a controller that
re-wrote identical status on every event would feed its own watch forever.

Drift is named after the field manager that made it (the Deployment's
managedFields), so that a streak of reverts against one manager is seen as a
fight (``fights.py``) and answered with backoff and a condition, not a loop.
"""

from __future__ import annotations

import logging
from typing import Protocol

from scalekeeper import metrics
from scalekeeper.cache.projections import DeploymentView, HpaView, Key, ScaleView
from scalekeeper.cache.store import Store
from scalekeeper.controller import status as st
from scalekeeper.controller.events import EventReason, EventRecorder
from scalekeeper.controller.fights import FightPolicy, FightTracker
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES, DEPLOYMENTS

log = logging.getLogger(__name__)


class CacheReader(Protocol):
    """The part of ``ClusterCache`` a sync reads (so unit tests can pass plain Stores)."""

    @property
    def scales(self) -> Store[ScaleView]: ...

    @property
    def deployments(self) -> Store[DeploymentView]: ...

    def hpa_targeting(self, key: Key) -> HpaView | None: ...


class Reconciler:
    def __init__(
        self, kube: KubeClient, cache: CacheReader, events: EventRecorder, fights: FightPolicy | None = None
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._events = events
        self._fights: FightTracker[Key] = FightTracker(fights or FightPolicy())
        # key -> the Deployment resourceVersion our last successful scale write
        # was preconditioned on. While the cache still shows that version it has
        # not seen our own write yet: acting on it would only earn a 409.
        self._written_over: dict[Key, str] = {}
        # The same for the DeploymentScale's status: while the cache shows the
        # version our last status patch replaced, a new patch could only 409.
        self._status_written_over: dict[Key, str] = {}

    async def sync(self, key: Key) -> float | None:
        """Reconcile one key; raises (KubeApiError) when the queue should retry with backoff.

        Returns the seconds after which the key must be synced again even if
        nothing changes (a fight's backoff or quiet period), or None.
        """
        scale = self._cache.scales.get(key)
        if scale is None:
            # No DeploymentScale (or it was deleted): the Deployment is not ours
            # to manage any more; leave its count as it is.
            self._written_over.pop(key, None)
            self._status_written_over.pop(key, None)
            self._end_fight(key)
            return None
        deployment = self._cache.deployments.get(key)
        if deployment is None:
            # The Deployment's ADDED event will queue this key again: no retry loop.
            self._written_over.pop(key, None)
            self._end_fight(key)
            await self._write_status(
                scale,
                st.Observed(
                    observed_generation=scale.generation,
                    replicas=0,
                    ready_replicas=0,
                    ready=False,
                    reason=st.Reason.DEPLOYMENT_NOT_FOUND,
                    message=f"Deployment {scale.namespace}/{scale.name} does not exist",
                ),
            )
            return None
        hpa = self._cache.hpa_targeting(key)
        if hpa is not None:
            self._end_fight(key)
            await self._write_status(
                scale,
                st.Observed(
                    observed_generation=scale.generation,
                    replicas=deployment.spec_replicas,
                    ready_replicas=deployment.ready_replicas,
                    ready=False,
                    reason=st.Reason.CONFLICT_WITH_HPA,
                    message=(
                        f"HorizontalPodAutoscaler {hpa.name} scales this Deployment; "
                        "scalekeeper leaves it alone until the HPA is removed"
                    ),
                ),
            )
            return None
        requeue_after: float | None = None
        if deployment.spec_replicas != scale.desired_replicas:
            if self._written_over.get(key) == deployment.resource_version:
                # Our own write is on its way through the watch; its MODIFIED event re-queues the key.
                return None
            drifter = self._drifter(scale, deployment)
            delay = self._fights.delay_before_revert(key, drifter) if drifter else 0.0
            if delay > 0:
                # Fighting: leave the other side's count in place for now and say why.
                await self._write_status(scale, self._observed(scale, deployment, deployment.spec_replicas))
                return delay
            await self._scale(scale, deployment, drifter)
            replicas = scale.desired_replicas
        else:
            replicas = deployment.spec_replicas
            quiet = self._fights.quiet_for(key)
            if quiet == 0:
                self._end_fight(key)
            elif quiet is not None:
                requeue_after = quiet  # to clear the condition once the other side has been quiet long enough
        await self._write_status(scale, self._observed(scale, deployment, replicas))
        return requeue_after

    def _drifter(self, scale: ScaleView, deployment: DeploymentView) -> str | None:
        """The field manager(s) whose change to the Deployment's count is drift; None if it is no drift.

        A mismatch after the status said the count was applied (or during a
        fight) is drift; before that it is a new desired count being rolled out.
        "" means drift by nobody managedFields names.
        """
        if not (st.was_in_sync(scale) or self._fights.fight(scale.key)):
            return None
        return ", ".join(m for m in deployment.replicas_managers if m != self._kube.field_manager)

    def _observed(self, scale: ScaleView, deployment: DeploymentView, replicas: int) -> st.Observed:
        fight = self._fights.fight(scale.key)
        if fight is None:
            reason, message = st.Reason.SCALED, f"Deployment spec.replicas is {replicas}"
        else:
            reason, message = st.Reason.CONFLICT_WITH_FIELD_MANAGER, self._fights.condition_message(fight)
        return st.Observed(
            observed_generation=scale.generation,
            replicas=replicas,
            ready_replicas=deployment.ready_replicas,
            ready=fight is None,
            reason=reason,
            message=message,
        )

    def _end_fight(self, key: Key) -> None:
        if self._fights.forget(key):
            metrics.REPLICA_FIGHTS.dec()
            log.info("fight over", extra={"dscale": f"{key[0]}/{key[1]}"})

    def forget_fights(self) -> None:
        """Leadership lost: the next leader counts afresh (the metric is per leading replica)."""
        metrics.REPLICA_FIGHTS.dec(self._fights.forget_all())

    async def _scale(self, scale: ScaleView, deployment: DeploymentView, drifter: str | None) -> None:
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": deployment.name,
                "namespace": deployment.namespace,
                "resourceVersion": deployment.resource_version,
            },
            "spec": {"replicas": scale.desired_replicas},
        }
        try:
            await self._kube.request("PUT", DEPLOYMENTS.path(deployment.namespace, deployment.name, "scale"), body=body)
        except KubeApiError as error:
            if not (error.is_conflict or error.is_not_found or error.status == 0 or error.status >= 500):
                # Refused for good (forbidden, invalid, ...): say so in the status, then retry with backoff.
                await self._report_failure(scale, deployment, error)
            raise
        self._written_over[scale.key] = deployment.resource_version
        log.info(
            "scaled deployment",
            extra={
                "dscale": f"{scale.namespace}/{scale.name}",
                "from": deployment.spec_replicas,
                "to": scale.desired_replicas,
                "drift_by": drifter,
            },
        )
        if drifter is not None:
            await self._events.record(
                scale,
                reason=EventReason.DRIFT_REVERTED,
                action="Scale",
                note=(
                    f"Deployment spec.replicas was changed to {deployment.spec_replicas} outside scalekeeper"
                    f"{f' (field manager {drifter!r})' if drifter else ''}; reverted to {scale.desired_replicas}"
                ),
            )
            if drifter and self._fights.reverted(scale.key, drifter):
                await self._fight_started(scale, drifter)
        else:
            await self._events.record(
                scale,
                reason=EventReason.SCALED,
                action="Scale",
                note=f"Scaled Deployment from {deployment.spec_replicas} to {scale.desired_replicas} replicas",
            )

    async def _fight_started(self, scale: ScaleView, manager: str) -> None:
        metrics.REPLICA_FIGHTS.inc()
        log.warning("fight detected", extra={"dscale": f"{scale.namespace}/{scale.name}", "manager": manager})
        await self._events.record(
            scale,
            reason=EventReason.CONFLICT_WITH_FIELD_MANAGER,
            action="Scale",
            note=self._fights.event_note(manager),
            warning=True,
        )

    async def _report_failure(self, scale: ScaleView, deployment: DeploymentView, error: KubeApiError) -> None:
        try:
            await self._write_status(
                scale,
                st.Observed(
                    observed_generation=scale.generation,
                    replicas=deployment.spec_replicas,
                    ready_replicas=deployment.ready_replicas,
                    ready=False,
                    reason=st.Reason.SCALE_FAILED,
                    message=f"scaling the Deployment failed: {error.status} {error.reason}: {error.message}"[:1000],
                ),
            )
        except KubeApiError as status_error:
            log.warning(
                "recording scale failure in status failed",
                extra={"dscale": f"{scale.namespace}/{scale.name}", "error": str(status_error)},
            )

    async def _write_status(self, scale: ScaleView, observed: st.Observed) -> None:
        patch = st.status_patch(scale, observed, st.timestamp())
        if patch is None:
            return
        if self._status_written_over.get(scale.key) == scale.resource_version:
            # Our previous patch is on its way through the watch; its event re-queues the key.
            return
        await self._kube.request(
            "PATCH",
            DEPLOYMENT_SCALES.path(scale.namespace, scale.name, "status"),
            body=patch,
            content_type="application/merge-patch+json",
        )
        self._status_written_over[scale.key] = scale.resource_version
        log.info(
            "updated status",
            extra={
                "dscale": f"{scale.namespace}/{scale.name}",
                "reason": observed.reason,
                "replicas": observed.replicas,
            },
        )
