"""ReplicaService: Get, Set, List and Watch, as both transports expose them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from scalekeeper.cache.informers import ClusterCache
from scalekeeper.cache.projections import DeploymentView, Key, ScaleView
from scalekeeper.cache.store import EventType
from scalekeeper.errors import Code, ServiceError
from scalekeeper.kube.resources import DEPLOYMENT_SCALES
from scalekeeper.service import paging, validation
from scalekeeper.service.authz import Authorizer, Identity, Permission
from scalekeeper.service.desired_state import CRD_MISSING, DesiredStateWriter
from scalekeeper.service.versions import DesiredVersion, desired_version
from scalekeeper.v1 import replicas_pb2 as pb

log = logging.getLogger(__name__)

# A watcher that falls this many events behind is cut off rather than let
# buffer without bound; it re-watches and receives the full state again.
WATCH_BUFFER = 10_000

_EVENT_TYPES = {
    EventType.ADDED: pb.ReplicasEvent.ADDED,
    EventType.MODIFIED: pb.ReplicasEvent.MODIFIED,
    EventType.DELETED: pb.ReplicasEvent.DELETED,
}


def fill_replicas(replicas: pb.Replicas, deployment: DeploymentView, scale: ScaleView | None) -> pb.Replicas:
    """Write the API view of one Deployment into ``replicas`` (in place: no copy into a list reply)."""
    replicas.namespace = deployment.namespace
    replicas.name = deployment.name
    replicas.desired_replicas = scale.desired_replicas if scale else deployment.spec_replicas
    replicas.spec_replicas = deployment.spec_replicas
    replicas.ready_replicas = deployment.ready_replicas
    replicas.available_replicas = deployment.available_replicas
    replicas.managed = scale is not None
    replicas.desired_version = desired_version(scale)
    replicas.deployment_resource_version = deployment.resource_version
    condition = scale.condition("Ready") if scale else None
    if condition is not None:
        replicas.condition.status = condition.status
        replicas.condition.reason = condition.reason
        replicas.condition.message = condition.message
    return replicas


def to_replicas(deployment: DeploymentView, scale: ScaleView | None) -> pb.Replicas:
    return fill_replicas(pb.Replicas(), deployment, scale)


class ReplicaService:
    def __init__(
        self,
        cache: ClusterCache,
        desired_state: DesiredStateWriter,
        authorizer: Authorizer,
        max_replicas: int,
    ) -> None:
        self._cache = cache
        self._desired_state = desired_state
        self._authorizer = authorizer
        self._max_replicas = max_replicas
        self._watchers: set[_WatchStream] = set()
        self._closed = False

    @property
    def ready(self) -> bool:
        return self._cache.healthy and not self._closed

    def close(self) -> None:
        """End every WatchReplicas stream (on shutdown) and refuse new ones."""
        self._closed = True
        for stream in self._watchers:
            stream.end()

    def _require_ready(self) -> None:
        if not self._cache.healthy:
            detail = "; ".join(self._cache.problems)[:300] if self._cache.synced else "still loading"
            raise ServiceError(
                Code.UNAVAILABLE,
                f"the Deployment cache is not in sync with the cluster ({detail}); retry shortly",
            )

    def _deployment(self, key: Key) -> DeploymentView:
        deployment = self._cache.deployments.get(key)
        if deployment is None:
            raise ServiceError(Code.NOT_FOUND, f"Deployment {key[0]}/{key[1]} not found")
        return deployment

    async def get_replicas(self, caller: Identity, request: pb.GetReplicasRequest) -> pb.Replicas:
        self._authorizer.authorize(caller, Permission.READ, "GetReplicas")
        key = validation.namespace(request.namespace), validation.deployment_name(request.name)
        self._require_ready()
        return to_replicas(self._deployment(key), self._cache.scales.get(key))

    async def set_replicas(self, caller: Identity, request: pb.SetReplicasRequest) -> pb.Replicas:
        self._authorizer.authorize(caller, Permission.WRITE, "SetReplicas")
        key = validation.namespace(request.namespace), validation.deployment_name(request.name)
        if not request.HasField("replicas"):
            raise ServiceError(Code.INVALID_ARGUMENT, "replicas is required; to scale to zero, send 0 explicitly")
        replicas = validation.replicas(request.replicas, self._max_replicas)
        expected = (
            DesiredVersion.parse(request.expected_desired_version)
            if request.HasField("expected_desired_version")
            else None
        )
        self._require_ready()
        if not self._cache.serves(DEPLOYMENT_SCALES):
            raise ServiceError(Code.FAILED_PRECONDITION, CRD_MISSING)
        deployment = self._deployment(key)
        hpa = self._cache.hpa_targeting(key)
        if hpa is not None:
            raise ServiceError(
                Code.FAILED_PRECONDITION,
                f"HorizontalPodAutoscaler {hpa.namespace}/{hpa.name} scales this Deployment; "
                "change the HPA's bounds or delete it first",
            )
        scale = await self._desired_state.write(
            *key, replicas, expected, self._cache.scales.get(key), take_ownership=request.take_ownership
        )
        log.info(
            "desired replicas set",
            extra={
                "identity": str(caller),
                "namespace": key[0],
                "deployment": key[1],
                "replicas": replicas,
                "take_ownership": request.take_ownership,
            },
        )
        return to_replicas(deployment, scale)

    async def list_deployments(
        self, caller: Identity, request: pb.ListDeploymentsRequest
    ) -> pb.ListDeploymentsResponse:
        self._authorizer.authorize(caller, Permission.READ, "ListDeployments")
        namespace = validation.namespace(request.namespace, required=False)
        limit = validation.page_size(request.page_size)
        after = paging.decode(request.page_token, namespace)
        self._require_ready()
        page, more = self._cache.deployments.page(namespace, after, limit)
        response = pb.ListDeploymentsResponse(next_page_token=paging.encode(namespace, page[-1].key) if more else "")
        scales = self._cache.scales
        for deployment in page:
            fill_replicas(response.deployments.add(), deployment, scales.get(deployment.key))
        return response

    async def watch_replicas(
        self, caller: Identity, request: pb.WatchReplicasRequest
    ) -> AsyncIterator[pb.ReplicasEvent]:
        """The current state as ADDED events, then every change, until the service closes."""
        self._authorizer.authorize(caller, Permission.READ, "WatchReplicas")
        namespace = validation.namespace(request.namespace, required=False)
        self._require_ready()
        if self._closed:
            raise ServiceError(Code.UNAVAILABLE, "the server is shutting down; reconnect to another replica")
        stream = _WatchStream(self._cache, namespace)
        # The snapshot and the handler registration happen with no await in
        # between, so no change can fall in the gap between them.
        snapshot = stream.snapshot()
        remove_deployment_handler = self._cache.deployments.add_handler(stream.on_deployment)
        remove_scale_handler = self._cache.scales.add_handler(stream.on_scale)
        self._watchers.add(stream)
        try:
            for event in snapshot:
                yield event
            while (event := await stream.queue.get()) is not None:
                yield event
            if stream.overflowed:
                raise ServiceError(Code.ABORTED, "the watch fell too far behind; watch again to get the full state")
        finally:
            self._watchers.discard(stream)
            remove_deployment_handler()
            remove_scale_handler()


class _WatchStream:
    """One WatchReplicas stream: turns cache changes in its namespace into events, bounded."""

    def __init__(self, cache: ClusterCache, namespace: str) -> None:
        self._cache = cache
        self._namespace = namespace
        self.queue: asyncio.Queue[pb.ReplicasEvent | None] = asyncio.Queue(maxsize=WATCH_BUFFER)
        self.overflowed = False

    def snapshot(self) -> list[pb.ReplicasEvent]:
        events, after = [], None
        while True:
            page, more = self._cache.deployments.page(self._namespace, after, validation.MAX_PAGE_SIZE)
            events.extend(self._event(pb.ReplicasEvent.ADDED, d, self._cache.scales.get(d.key)) for d in page)
            if not more:
                return events
            after = page[-1].key

    def on_deployment(self, event: EventType, old: DeploymentView | None, new: DeploymentView | None) -> None:
        deployment = new or old
        if deployment is not None and self._in_scope(deployment.namespace):
            self._publish(self._event(_EVENT_TYPES[event], deployment, self._cache.scales.get(deployment.key)))

    def on_scale(self, _event: EventType, old: ScaleView | None, new: ScaleView | None) -> None:
        scale = new or old
        if scale is None or not self._in_scope(scale.namespace):
            return
        deployment = self._cache.deployments.get(scale.key)
        if deployment is not None:
            self._publish(self._event(pb.ReplicasEvent.MODIFIED, deployment, new))

    def _in_scope(self, namespace: str) -> bool:
        return not self._namespace or namespace == self._namespace

    @staticmethod
    def _event(
        event_type: pb.ReplicasEvent.Type.ValueType, deployment: DeploymentView, scale: ScaleView | None
    ) -> pb.ReplicasEvent:
        return pb.ReplicasEvent(type=event_type, replicas=to_replicas(deployment, scale))

    def end(self) -> None:
        """Queue the end-of-stream marker, making room for it if need be."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def _publish(self, event: pb.ReplicasEvent) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.end()
