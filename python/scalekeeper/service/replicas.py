"""ReplicaService: Get, Set, List and Watch, as both transports expose them."""

from __future__ import annotations

import logging

from scalekeeper.cache.informers import ClusterCache
from scalekeeper.cache.projections import DeploymentView, Key
from scalekeeper.errors import Code, ServiceError
from scalekeeper.kube.resources import DEPLOYMENT_SCALES
from scalekeeper.service import paging, validation
from scalekeeper.service.api_view import to_replicas
from scalekeeper.service.authz import Authorizer, Identity, Permission
from scalekeeper.service.desired_state import CRD_MISSING, DesiredStateWriter
from scalekeeper.service.feed import ReplicasFeed
from scalekeeper.service.versions import DesiredVersion
from scalekeeper.service.watch import WatchStream
from scalekeeper.v1 import replicas_pb2 as pb

log = logging.getLogger(__name__)

# Open WatchReplicas streams per server, both transports together, unless configured.
DEFAULT_MAX_WATCH_STREAMS = 2000


class ReplicaService:
    def __init__(
        self,
        cache: ClusterCache,
        desired_state: DesiredStateWriter,
        authorizer: Authorizer,
        max_replicas: int,
        *,
        max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS,
        feed: ReplicasFeed | None = None,
    ) -> None:
        self._cache = cache
        self._desired_state = desired_state
        self._authorizer = authorizer
        self._max_replicas = max_replicas
        self._max_watch_streams = max_watch_streams
        self._feed = feed or ReplicasFeed(cache.deployments, cache.scales)
        self._watchers: set[WatchStream] = set()
        self._closed = False

    @property
    def ready(self) -> bool:
        return self._cache.healthy and not self._closed

    def close(self) -> None:
        """End every WatchReplicas stream (on shutdown) and refuse new ones."""
        self._closed = True
        self._feed.close()

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
            raise _not_found(key)
        return deployment

    async def get_replicas(self, caller: Identity, request: pb.GetReplicasRequest) -> pb.Replicas:
        self._authorizer.authorize(caller, Permission.READ, "GetReplicas")
        key = request.namespace, request.name
        # The hot path of the API: a cached Deployment's key is valid by construction, so only a miss
        # pays for validation, and it gets the same answer it would have got from validating first.
        replicas = self._feed.replicas(key) if self._cache.healthy else None
        if replicas is None:
            validation.namespace(key[0])
            validation.deployment_name(key[1])
            self._require_ready()
            raise _not_found(key)
        return replicas

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
        # Copying the views the feed built is about twice as fast as building them again.
        response.deployments.extend(self._feed.view(deployment) for deployment in page)
        return response

    def open_watch(self, caller: Identity, request: pb.WatchReplicasRequest) -> WatchStream:
        """Accept or refuse a WatchReplicas stream before anything is sent: refusals are plain errors.

        The caller iterates ``stream.changes()`` and closes the stream (it is a
        context manager) however the stream ends.
        """
        self._authorizer.authorize(caller, Permission.READ, "WatchReplicas")
        namespace = validation.namespace(request.namespace, required=False)
        self._require_ready()
        if self._closed:
            raise ServiceError(Code.UNAVAILABLE, "the server is shutting down; reconnect to another replica")
        if len(self._watchers) >= self._max_watch_streams:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"this server already serves {self._max_watch_streams} WatchReplicas streams, its limit "
                "(--max-watch-streams); retry with backoff, or watch through another replica",
            )
        stream = WatchStream(self._feed, namespace, self._watchers.discard)
        self._watchers.add(stream)
        return stream


def _not_found(key: Key) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, f"Deployment {key[0]}/{key[1]} not found")
