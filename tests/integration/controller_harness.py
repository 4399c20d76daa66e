"""The in-process controller and admin-side helpers for the controller tests (fixtures in ``conftest.py``).

What the tests check is spec.replicas (what the controller writes), the
DeploymentScale's status, Events, the Lease, and which client wrote what; the
controller-manager and KWOK roll the Deployments out meanwhile, so a test
that compares versions waits for :meth:`Cluster.rolled_out` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.cache.informers import ClusterCache
from scalekeeper.controller import Controller, LeaderElector, LeaseConfig
from scalekeeper.controller.events import REPORTING_CONTROLLER
from scalekeeper.controller.fights import FightPolicy
from scalekeeper.kube.client import KubeApiError, KubeClient, connect
from scalekeeper_dev import manifests

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "deploymentscales"


class Instrumented:
    """A KubeClient whose requests are recorded, and which can be cut off from the apiserver.

    Cutting it off is fault injection in our own client (as a network partition
    would), not a fake apiserver: every request that does go out is real.
    """

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.writes: list[tuple[str, str]] = []
        # (time.monotonic() when answered, path) of each write the apiserver accepted.
        self.accepted: list[tuple[float, str]] = []
        self.partitioned = False
        real_request = kube.request

        async def request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            if self.partitioned:
                raise KubeApiError(0, "Unavailable", "partitioned by the test")
            if method == "GET":
                return await real_request(method, path, **kwargs)
            self.writes.append((method, path))
            answer = await real_request(method, path, **kwargs)
            self.accepted.append((time.monotonic(), path))
            return answer

        kube.request = request  # type: ignore[method-assign]

    def writes_to(self, fragment: str) -> list[tuple[str, str]]:
        return [w for w in self.writes if fragment in w[1]]

    def accepted_at(self, fragment: str) -> list[float]:
        """When the apiserver accepted each write to a path containing ``fragment``."""
        return [at for at, path in self.accepted if fragment in path]

    def non_lease_writes(self) -> list[tuple[str, str]]:
        return [w for w in self.writes if "/leases" not in w[1]]


def scale_manifest(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeploymentScale",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    }


class Cluster:
    """Admin-side helpers (setup and assertions) over the synchronous client."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.events = client.EventsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.coordination = client.CoordinationV1Api(api)

    def create_deployment(self, name: str, replicas: int = 1) -> None:
        self.apps.create_namespaced_deployment(self.ns, manifests.deployment(name, replicas))

    def deployment_replicas(self, name: str) -> int | None:
        try:
            return int(self.apps.read_namespaced_deployment(name, self.ns).spec.replicas)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def deployment_rv(self, name: str) -> str:
        return str(self.apps.read_namespaced_deployment(name, self.ns).metadata.resource_version)

    def rolled_out(self, name: str) -> bool:
        """Whether the controller-manager is done with the Deployment: it writes its status no more."""
        deployment = self.apps.read_namespaced_deployment(name, self.ns)
        status, wanted = deployment.status, deployment.spec.replicas
        return (
            status.observed_generation == deployment.metadata.generation
            and (status.replicas or 0) == (status.updated_replicas or 0) == wanted
            and (status.ready_replicas or 0) == (status.available_replicas or 0) == wanted
        )

    def scale_deployment(self, name: str, replicas: int) -> None:
        """What `kubectl scale deployment` does: write the /scale subresource."""
        self.apps.patch_namespaced_deployment_scale(name, self.ns, {"spec": {"replicas": replicas}})

    def create_scale(self, name: str, replicas: int) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, scale_manifest(name, replicas))

    def set_desired(self, name: str, replicas: int) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": {"replicas": replicas}}
        )

    def dscale(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return obj

    def ready(self, name: str) -> dict[str, Any] | None:
        conditions = (self.dscale(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), None)

    def ready_reason(self, name: str) -> str | None:
        condition = self.ready(name)
        return f"{condition['status']}/{condition['reason']}" if condition else None

    def own_events(self, regarding: str | None = None) -> list[client.EventsV1Event]:
        """scalekeeper's Events in the namespace, optionally about objects named ``regarding``.

        Selected server-side: the controller-manager's core/v1 Events (about
        ReplicaSets and Pods) have no eventTime, which this client's
        events.k8s.io/v1 model refuses to parse.
        """
        selector = f"reportingController={REPORTING_CONTROLLER}"
        if regarding is not None:
            selector += f",regarding.name={regarding}"
        return list(self.events.list_namespaced_event(self.ns, field_selector=selector).items)

    def event_reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.own_events(name) if e.regarding.kind == "DeploymentScale"]


def idle(controller: Controller) -> bool:
    queue = controller.queue
    return queue is not None and len(queue) == 0 and queue.processing == 0 and queue.delayed == 0


Factory = Callable[..., Awaitable[tuple[Controller, Instrumented, ClusterCache]]]


@contextlib.asynccontextmanager
async def controller_factory(kubeconfig: Path, namespace: str) -> AsyncIterator[Factory]:
    """Factory: a started controller with its own client and cache, as one replica of the server has.

    Everything it started is stopped on exit.
    """
    started: list[tuple[Controller, ClusterCache, KubeClient]] = []

    async def start(
        *,
        elector_identity: str | None = None,
        lease: dict[str, float] | None = None,
        fights: FightPolicy | None = None,
    ) -> Any:
        kube = await connect(kubeconfig)
        instrumented = Instrumented(kube)
        cache = ClusterCache(kube, namespaces=(namespace,), watch_timeout_seconds=30, watch_read_timeout_seconds=45)
        await cache.start()
        elector = None
        if elector_identity is not None:
            timings = lease or {"lease_duration": 6.0, "renew_deadline": 4.0, "retry_period": 0.5}
            elector = LeaderElector(kube, LeaseConfig(namespace, "scalekeeper-controller", elector_identity, **timings))
        controller = Controller(kube, cache, workers=2, elector=elector, backoff_max=1.0, fights=fights)
        await controller.start()
        started.append((controller, cache, kube))
        async with asyncio.timeout(30):
            await cache.wait_synced()
        return controller, instrumented, cache

    try:
        yield start
    finally:
        for controller, cache, kube in reversed(started):
            await controller.stop()
            await cache.stop()
            await kube.close()
