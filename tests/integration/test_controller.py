"""The DeploymentScale controller against the real apiserver, run in-process on the test's event loop.

What these tests check is spec.replicas (what the controller writes), the
DeploymentScale's status, Events, the Lease, and which client wrote what; the
Pods that kube-controller-manager and KWOK then create and make Ready are
covered by test_rollouts.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from polling import eventually_async
from scalekeeper.cache.informers import ClusterCache
from scalekeeper.controller import Controller, LeaderElector, LeaseConfig
from scalekeeper.controller.events import REPORTING_CONTROLLER
from scalekeeper.kube.client import KubeApiError, KubeClient, connect
from scalekeeper_dev import manifests
from scalekeeper_dev.testcluster import TestCluster

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "deploymentscales"
T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------------------------


class Instrumented:
    """A KubeClient whose requests are recorded, and which can be cut off from the apiserver.

    Cutting it off is fault injection in our own client (as a network partition
    would), not a fake apiserver: every request that does go out is real.
    """

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.writes: list[tuple[str, str]] = []
        self.partitioned = False
        real_request = kube.request

        async def request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            if self.partitioned:
                raise KubeApiError(0, "Unavailable", "partitioned by the test")
            if method != "GET":
                self.writes.append((method, path))
            return await real_request(method, path, **kwargs)

        kube.request = request  # type: ignore[method-assign]

    def writes_to(self, fragment: str) -> list[tuple[str, str]]:
        return [w for w in self.writes if fragment in w[1]]

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

    def event_reasons(self, name: str) -> list[str]:
        return [
            e.reason
            # Selected server-side: the controller-manager's core/v1 Events (about
            # ReplicaSets and Pods) have no eventTime, which this client's
            # events.k8s.io/v1 model refuses to parse.
            for e in self.events.list_namespaced_event(
                self.ns, field_selector=f"regarding.kind=DeploymentScale,regarding.name={name}"
            ).items
            if e.reporting_controller == REPORTING_CONTROLLER
        ]


@pytest.fixture
def cluster(admin_api: client.ApiClient, namespace: str, scalekeeper_crd: str) -> Cluster:
    return Cluster(admin_api, namespace)


Factory = Callable[..., Awaitable[tuple[Controller, Instrumented, ClusterCache]]]


@pytest.fixture
async def start_controller(test_cluster: TestCluster, namespace: str, scalekeeper_crd: str) -> AsyncIterator[Factory]:
    """Factory: a started controller with its own client and cache, as one replica of the server has."""
    started: list[tuple[Controller, ClusterCache, KubeClient]] = []

    async def start(*, elector_identity: str | None = None, lease: dict[str, float] | None = None) -> Any:
        kube = await connect(test_cluster.admin_kubeconfig)
        instrumented = Instrumented(kube)
        cache = ClusterCache(kube, namespaces=(namespace,), watch_timeout_seconds=30, watch_read_timeout_seconds=45)
        await cache.start()
        elector = None
        if elector_identity is not None:
            timings = lease or {"lease_duration": 6.0, "renew_deadline": 4.0, "retry_period": 0.5}
            elector = LeaderElector(kube, LeaseConfig(namespace, "scalekeeper-controller", elector_identity, **timings))
        controller = Controller(kube, cache, workers=2, elector=elector, backoff_max=1.0)
        await controller.start()
        started.append((controller, cache, kube))
        async with asyncio.timeout(30):
            await cache.wait_synced()
        return controller, instrumented, cache

    yield start
    for controller, cache, kube in reversed(started):
        await controller.stop()
        await cache.stop()
        await kube.close()


def idle(controller: Controller) -> bool:
    queue = controller.queue
    return queue is not None and len(queue) == 0 and queue.processing == 0 and queue.delayed == 0


# --- tests -----------------------------------------------------------------------------------------------------


async def test_desired_count_is_applied_and_reported(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 3)
    await start_controller()

    await eventually_async(lambda: cluster.deployment_replicas("web") == 3, "Deployment scaled to 3")
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "Ready=True reason Scaled")
    obj = cluster.dscale("web")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["replicas"] == 3
    # The Pods become Ready on the fake nodes; the status follows the Deployment's.
    await eventually_async(lambda: cluster.dscale("web")["status"]["readyReplicas"] == 3, "readyReplicas 3")
    await eventually_async(lambda: "Scaled" in cluster.event_reasons("web"), "a Scaled Event")

    # A new desired count is a new generation: Scaled again, not drift.
    cluster.set_desired("web", 5)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 5, "Deployment scaled to 5")
    await eventually_async(
        lambda: (
            cluster.dscale("web")["status"]["observedGeneration"] == cluster.dscale("web")["metadata"]["generation"]
        ),
        "status observes the new generation",
    )
    assert cluster.dscale("web")["status"]["replicas"] == 5
    assert "DriftReverted" not in cluster.event_reasons("web")


async def test_drift_is_reverted_with_an_event(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 2)
    await start_controller()
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "in sync")
    await eventually_async(lambda: cluster.deployment_replicas("web") == 2, "Deployment at 2")
    transition = cluster.ready("web")["lastTransitionTime"]  # type: ignore[index]

    cluster.scale_deployment("web", 7)  # someone else, e.g. `kubectl scale deployment web --replicas=7`

    await eventually_async(lambda: "DriftReverted" in cluster.event_reasons("web"), "a DriftReverted Event")
    await eventually_async(lambda: cluster.deployment_replicas("web") == 2, "drift reverted to 2")
    ready = cluster.ready("web")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("True", "Scaled", transition)


async def test_scale_applied_from_yaml_and_scale_subresource(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("api", replicas=1)
    await start_controller()
    manifest = """
apiVersion: scalekeeper.dev/v1alpha1
kind: DeploymentScale
metadata:
  name: api
spec:
  replicas: 4
"""
    # What `kubectl apply --server-side -f dscale.yaml` sends.
    cluster.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.ns,
        PLURAL,
        "api",
        yaml.safe_load(manifest),
        field_manager="kubectl",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    await eventually_async(lambda: cluster.deployment_replicas("api") == 4, "Deployment scaled to 4 from YAML")

    # `kubectl scale dscale/api --replicas=6` goes through the CRD's scale subresource.
    cluster.custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, cluster.ns, PLURAL, "api", {"spec": {"replicas": 6}}
    )
    await eventually_async(lambda: cluster.deployment_replicas("api") == 6, "Deployment scaled to 6 via dscale/scale")
    scale = cluster.custom.get_namespaced_custom_object_scale(GROUP, VERSION, cluster.ns, PLURAL, "api")
    await eventually_async(
        lambda: (
            cluster.custom.get_namespaced_custom_object_scale(GROUP, VERSION, cluster.ns, PLURAL, "api")["status"].get(
                "replicas"
            )
            == 6
        ),
        "scale subresource reports status.replicas",
    )
    assert scale["spec"]["replicas"] == 6


async def kubectl(test_cluster: TestCluster, namespace: str, *args: str, stdin: str = "") -> str:
    from scalekeeper_dev import toolchain

    process = await asyncio.create_subprocess_exec(
        str(toolchain.ensure("kubectl")),
        f"--kubeconfig={test_cluster.admin_kubeconfig}",
        f"--namespace={namespace}",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin.encode())
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def test_kubectl_apply_scale_and_get(
    cluster: Cluster, start_controller: Factory, test_cluster: TestCluster
) -> None:
    cluster.create_deployment("shop", replicas=1)
    await start_controller()
    manifest = (
        "apiVersion: scalekeeper.dev/v1alpha1\nkind: DeploymentScale\nmetadata:\n  name: shop\nspec:\n  replicas: 2\n"
    )
    await kubectl(test_cluster, cluster.ns, "apply", "-f", "-", stdin=manifest)
    await eventually_async(lambda: cluster.deployment_replicas("shop") == 2, "Deployment scaled by `kubectl apply`")

    await kubectl(test_cluster, cluster.ns, "scale", "dscale/shop", "--replicas=3")
    await eventually_async(
        lambda: cluster.deployment_replicas("shop") == 3, "Deployment scaled by `kubectl scale dscale`"
    )
    await eventually_async(lambda: cluster.dscale("shop")["status"]["replicas"] == 3, "status.replicas follows")

    await eventually_async(lambda: cluster.dscale("shop")["status"].get("readyReplicas") == 3, "the Pods ready")

    table = await kubectl(test_cluster, cluster.ns, "get", "dscale", "shop", "-o", "wide")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "REASON", "AGE"]
    assert row.split()[:5] == ["shop", "3", "3", "3", "Scaled"]


@pytest.mark.parametrize("replicas", [-1, 10001, "three"])
def test_schema_rejects_invalid_counts(cluster: Cluster, replicas: object) -> None:
    with pytest.raises(ApiException) as raised:
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, cluster.ns, PLURAL, {**scale_manifest("bad", 1), "spec": {"replicas": replicas}}
        )
    assert raised.value.status == 422


def test_schema_requires_replicas(cluster: Cluster) -> None:
    with pytest.raises(ApiException) as raised:
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, cluster.ns, PLURAL, {**scale_manifest("bad", 1), "spec": {}}
        )
    assert raised.value.status == 422
    cluster.create_scale("edge", 10000)  # the maximum is allowed
    cluster.create_scale("zero", 0)


async def test_deleted_scale_leaves_the_deployment_alone(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 3)
    controller, kube, cache = await start_controller()
    await eventually_async(lambda: cluster.deployment_replicas("web") == 3, "Deployment scaled to 3")

    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "web")
    await eventually_async(lambda: cache.scales.get((cluster.ns, "web")) is None, "cache saw the deletion")
    assert cluster.deployment_replicas("web") == 3  # deleting the CR does not scale anything
    writes = len(kube.writes_to("/deployments/"))

    cluster.scale_deployment("web", 8)
    await eventually_async(lambda: cluster.rolled_out("web"), "the manual scale rolled out")
    rv = cluster.deployment_rv("web")
    await eventually_async(
        lambda: (d := cache.deployments.get((cluster.ns, "web"))) is not None and d.resource_version == rv,
        "cache saw the manual scale",
    )
    await eventually_async(lambda: idle(controller), "controller idle")
    assert cluster.deployment_replicas("web") == 8
    assert len(kube.writes_to("/deployments/")) == writes


async def test_deployment_created_after_its_scale(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_scale("late", 3)
    await start_controller()
    await eventually_async(lambda: cluster.ready_reason("late") == "False/DeploymentNotFound", "DeploymentNotFound")
    assert cluster.dscale("late")["status"]["replicas"] == 0

    cluster.create_deployment("late", replicas=1)
    await eventually_async(lambda: cluster.deployment_replicas("late") == 3, "new Deployment scaled to 3")
    await eventually_async(
        lambda: cluster.ready_reason("late") == "True/Scaled", "Ready=True once the Deployment exists"
    )


async def test_deployment_deleted_and_recreated(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 3)
    controller, kube, _cache = await start_controller()
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "in sync")

    cluster.apps.delete_namespaced_deployment("web", cluster.ns)
    await eventually_async(lambda: cluster.ready_reason("web") == "False/DeploymentNotFound", "DeploymentNotFound")
    # No hot loop on a missing Deployment: once the status says so, nothing more is written.
    await eventually_async(lambda: idle(controller), "controller idle")
    writes = len(kube.writes)
    assert controller.queue is not None
    assert controller.queue.num_requeues((cluster.ns, "web")) == 0

    cluster.create_deployment("web", replicas=1)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 3, "recreated Deployment scaled to 3")
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "Ready again")
    assert len(kube.writes) > writes


async def test_hpa_conflict_means_no_writes(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("web", replicas=2)
    cluster.autoscaling.create_namespaced_horizontal_pod_autoscaler(
        cluster.ns,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
            },
        },
    )
    cluster.create_scale("web", 5)
    _controller, kube, _cache = await start_controller()

    await eventually_async(lambda: cluster.ready_reason("web") == "False/ConflictWithHPA", "ConflictWithHPA")
    ready = cluster.ready("web")
    assert ready is not None
    assert "web-hpa" in ready["message"]
    assert cluster.dscale("web")["status"]["replicas"] == 2
    assert cluster.deployment_replicas("web") == 2
    assert kube.writes_to("/deployments/") == []

    # The HPA goes away: the desired count is applied (a new count, not drift).
    cluster.autoscaling.delete_namespaced_horizontal_pod_autoscaler("web-hpa", cluster.ns)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 5, "scaled once the HPA is gone")
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "Ready=True")
    assert "DriftReverted" not in cluster.event_reasons("web")


async def test_no_writes_when_nothing_changed(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 3)
    controller, kube, cache = await start_controller()
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "in sync")
    # Rolled out first: the Pods' readiness is a change that matters (status.readyReplicas).
    await eventually_async(lambda: cluster.rolled_out("web"), "the Deployment rolled out")
    await eventually_async(
        lambda: cluster.dscale("web")["status"].get("readyReplicas") == 3, "the status's readyReplicas"
    )
    await eventually_async(lambda: idle(controller), "controller idle")
    writes = list(kube.writes)
    events = cluster.event_reasons("web")

    # Changes that do not matter still make both objects' watch events fire, and a sync run.
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, PLURAL, "web", {"metadata": {"labels": {"touched": "yes"}}}
    )
    cluster.apps.patch_namespaced_deployment("web", cluster.ns, {"metadata": {"annotations": {"touched": "yes"}}})
    scale_rv = cluster.dscale("web")["metadata"]["resourceVersion"]
    deployment_rv = cluster.deployment_rv("web")
    key = (cluster.ns, "web")
    await eventually_async(
        lambda: (
            (s := cache.scales.get(key)) is not None
            and s.resource_version == scale_rv
            and (d := cache.deployments.get(key)) is not None
            and d.resource_version == deployment_rv
        ),
        "cache saw both changes",
    )
    await eventually_async(lambda: idle(controller), "controller idle after the no-op syncs")

    assert kube.writes == writes
    assert cluster.dscale("web")["metadata"]["resourceVersion"] == scale_rv
    assert cluster.deployment_rv("web") == deployment_rv
    assert cluster.event_reasons("web") == events


async def test_only_the_leader_writes_and_a_clean_stop_hands_over_fast(
    cluster: Cluster, start_controller: Factory
) -> None:
    first = await start_controller(elector_identity="replica-a")
    second = await start_controller(elector_identity="replica-b")
    by_identity = {"replica-a": first, "replica-b": second}

    def leaders() -> list[str]:
        return [identity for identity, (controller, _, _) in by_identity.items() if controller.is_leader]

    await eventually_async(lambda: len(leaders()) == 1, "one leader")
    leader_id = leaders()[0]
    follower_id = "replica-b" if leader_id == "replica-a" else "replica-a"
    leader, leader_kube, _ = by_identity[leader_id]
    follower, follower_kube, _ = by_identity[follower_id]
    lease = cluster.coordination.read_namespaced_lease("scalekeeper-controller", cluster.ns)
    assert lease.spec.holder_identity == leader_id

    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 3)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 3, "leader scaled the Deployment")
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "in sync")
    assert leader_kube.writes_to("/deployments/web/scale")
    assert follower_kube.non_lease_writes() == []
    assert not follower.is_leader

    stopped_at = time.monotonic()
    await leader.stop()
    assert not leader.is_leader
    released = cluster.coordination.read_namespaced_lease("scalekeeper-controller", cluster.ns)
    assert released.spec.holder_identity in (None, follower_id)
    await eventually_async(lambda: follower.is_leader, "the follower takes over", timeout=6.0)
    # Released, so far faster than the 6 s lease duration.
    assert time.monotonic() - stopped_at < 6.0
    lease = cluster.coordination.read_namespaced_lease("scalekeeper-controller", cluster.ns)
    assert lease.spec.holder_identity == follower_id
    assert lease.spec.lease_transitions >= 1

    old_leader_writes = len(leader_kube.writes)
    cluster.set_desired("web", 6)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 6, "new leader applies the new count")
    assert follower_kube.writes_to("/deployments/web/scale")
    assert len(leader_kube.writes) == old_leader_writes


async def test_a_partitioned_leader_steps_down_before_another_takes_over(
    cluster: Cluster, start_controller: Factory
) -> None:
    timings = {"lease_duration": 4.0, "renew_deadline": 2.5, "retry_period": 0.5}
    first = await start_controller(elector_identity="replica-a", lease=timings)
    await eventually_async(lambda: first[0].is_leader, "replica-a leads")
    second = await start_controller(elector_identity="replica-b", lease=timings)
    cluster.create_deployment("web", replicas=1)
    cluster.create_scale("web", 2)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 2, "replica-a scaled the Deployment")
    assert second[1].non_lease_writes() == []

    first[1].partitioned = True  # replica-a can no longer reach the apiserver: no renewals, no release
    cut_at = time.monotonic()

    def handed_over() -> bool:
        assert not (first[0].is_leader and second[0].is_leader), "two leaders at once"
        return second[0].is_leader

    await eventually_async(handed_over, "replica-b takes over after the lease expires", timeout=15.0)
    # Not before the lease expired on replica-b's clock (it last saw a renewal at most just before the cut).
    assert time.monotonic() - cut_at >= timings["lease_duration"] - 2 * timings["retry_period"] - 1.0
    assert not first[0].is_leader

    cluster.set_desired("web", 4)
    await eventually_async(lambda: cluster.deployment_replicas("web") == 4, "replica-b applies the new count")
    first[1].partitioned = False  # let the fixture's teardown reach the apiserver
