"""scalekeeper against real rollouts: Pods are created, become Ready and are deleted (KWOK's fake nodes).

The server runs with its controller. What is checked is what a caller sees
while the cluster acts: the counts (`spec_replicas`, `ready_replicas`,
`available_replicas`) in GetReplicas and WatchReplicas, and the
DeploymentScale's Ready condition, which means "the desired count is applied"
whether or not the Pods become ready (docs/design.md, section 4).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import grpc
import pytest
from kubernetes import client
from server_harness import ServerProcess, StartServer, eventually

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper_dev import kwok, manifests
from scalekeeper_dev.testcluster import TestCluster

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "deploymentscales"
ROLLOUT = 60.0  # seconds; a rollout on fake nodes takes about one


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--controller", f"--lease-name=t-{secrets.token_hex(4)}", "--leader-election-namespace=default")


class Rollouts:
    """The caller's view (gRPC) and the cluster's (admin) of one namespace."""

    def __init__(self, server: ServerProcess, admin_api: client.ApiClient, namespace: str) -> None:
        self.stub = server.stub("writer")
        self.ns = namespace
        self.apps = client.AppsV1Api(admin_api)
        self.core = client.CoreV1Api(admin_api)
        self.custom = client.CustomObjectsApi(admin_api)

    def create(self, name: str, replicas: int, **kwargs: object) -> None:
        self.apps.create_namespaced_deployment(self.ns, manifests.deployment(name, replicas, **kwargs))
        eventually(lambda: self.get(name), f"{name} in the server's cache")

    def get(self, name: str) -> pb.Replicas:
        return self.stub.GetReplicas(pb.GetReplicasRequest(namespace=self.ns, name=name))

    def set(self, name: str, replicas: int) -> pb.Replicas:
        return self.stub.SetReplicas(pb.SetReplicasRequest(namespace=self.ns, name=name, replicas=replicas))

    def reaches(self, name: str, *, ready: int, spec: int | None = None) -> pb.Replicas:
        """Wait until GetReplicas reports ``ready`` ready and available replicas (and ``spec``)."""

        def check() -> pb.Replicas | None:
            got = self.get(name)
            counts_match = got.ready_replicas == ready and got.available_replicas == ready
            return got if counts_match and got.spec_replicas == (ready if spec is None else spec) else None

        return eventually(check, f"{name}: {ready} ready and available", timeout=ROLLOUT)

    def pods(self, name: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(self.ns, label_selector=f"app={name}").items

    def scale_status(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object_status(GROUP, VERSION, self.ns, PLURAL, name)["status"]


@pytest.fixture
def rollouts(server: ServerProcess, admin_api: client.ApiClient, namespace: str) -> Rollouts:
    return Rollouts(server, admin_api, namespace)


def test_scale_up_down_and_to_zero_are_reported_as_pods_come_and_go(rollouts: Rollouts) -> None:
    rollouts.create("web", 2)
    rollouts.reaches("web", ready=2)

    applied = rollouts.set("web", 5)
    assert applied.desired_replicas == 5
    replicas = rollouts.reaches("web", ready=5)
    assert (replicas.condition.status, replicas.condition.reason) == ("True", "Scaled")
    eventually(lambda: rollouts.scale_status("web").get("readyReplicas") == 5, "the DeploymentScale's readyReplicas")
    assert len(rollouts.pods("web")) == 5

    rollouts.set("web", 2)
    rollouts.reaches("web", ready=2)
    eventually(lambda: len(rollouts.pods("web")) == 2, "scale-down Pods deleted", timeout=ROLLOUT)

    rollouts.set("web", 0)
    replicas = rollouts.reaches("web", ready=0)
    assert (replicas.condition.status, replicas.condition.reason) == ("True", "Scaled")
    eventually(lambda: not rollouts.pods("web"), "every Pod deleted", timeout=ROLLOUT)
    # The controller copies the Deployment's counts into the status after it sees them: a moment later.
    eventually(lambda: rollouts.scale_status("web").get("readyReplicas") == 0, "the DeploymentScale's readyReplicas")


def test_watch_replicas_streams_the_rollout_until_all_are_ready(rollouts: Rollouts) -> None:
    rollouts.create("web", 1)
    rollouts.reaches("web", ready=1)
    stream = rollouts.stub.WatchReplicas(pb.WatchReplicasRequest(namespace=rollouts.ns), timeout=ROLLOUT)
    try:
        seen_ready: list[int] = []
        rollouts.set("web", 5)
        for event in stream:
            if event.replicas.name == "web":
                seen_ready.append(event.replicas.ready_replicas)
                if event.replicas.ready_replicas == 5:
                    break
    finally:
        stream.cancel()
    assert seen_ready[-1] == 5, seen_ready
    assert seen_ready == sorted(seen_ready), "ready_replicas only grows during a scale-up"


@pytest.fixture
def cordoned_node(admin_api: client.ApiClient) -> Iterator[tuple[str, dict[str, str]]]:
    """A fake node of this test's own, Ready but cordoned: its name and the label that selects it."""
    core = client.CoreV1Api(admin_api)
    pool = secrets.token_hex(4)
    name, labels = f"kwok-cordoned-{pool}", {"scalekeeper.dev/test-pool": pool}
    core.create_node(kwok.fake_node(name, labels))
    try:
        eventually(
            lambda: any(c.type == "Ready" and c.status == "True" for c in core.read_node(name).status.conditions or []),
            "KWOK to make the node Ready",
        )
        core.patch_node(name, {"spec": {"unschedulable": True}})
        yield name, labels
    finally:
        core.delete_node(name)


def test_pods_that_never_become_ready_leave_the_count_applied_and_ready_at_zero(
    rollouts: Rollouts, cordoned_node: tuple[str, dict[str, str]]
) -> None:
    node, selector = cordoned_node
    rollouts.create("stuck", 0, node_selector=selector)
    rollouts.set("stuck", 3)

    # Applied: the count is scalekeeper's to set, and it is set.
    replicas = eventually(
        lambda: (got := rollouts.get("stuck")).spec_replicas == 3 and got.condition.reason == "Scaled" and got,
        "the count applied",
    )
    assert replicas.condition.status == "True"

    def unschedulable() -> list[client.V1Pod] | None:
        pods = rollouts.pods("stuck")
        verdicts = [(c.status, c.reason) for p in pods for c in p.status.conditions or [] if c.type == "PodScheduled"]
        return pods if len(pods) == 3 and verdicts == [("False", "Unschedulable")] * 3 else None

    pods = eventually(unschedulable, "3 Pods the scheduler cannot place")
    assert {pod.status.phase for pod in pods} == {"Pending"}
    replicas = rollouts.get("stuck")
    assert (replicas.ready_replicas, replicas.available_replicas) == (0, 0)
    assert rollouts.scale_status("stuck")["readyReplicas"] == 0

    # Uncordoned, the same Pods are scheduled and become ready.
    rollouts.core.patch_node(node, {"spec": {"unschedulable": False}})
    rollouts.reaches("stuck", ready=3)


def _hpa(name: str, min_replicas: int, max_replicas: int) -> dict:
    return {
        "metadata": {"name": f"{name}-hpa"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
        },
    }


def test_an_hpa_scaling_a_deployment_with_pods_wins_and_scalekeeper_resumes_after_it(
    rollouts: Rollouts, admin_api: client.ApiClient, test_cluster: TestCluster
) -> None:
    """The HPA controller runs: it raises the count to its minimum; scalekeeper reports it and refuses writes."""
    if not test_cluster.is_local:
        pytest.skip("the HPA controller's timing is the cluster's own")
    rollouts.create("api", 1)
    rollouts.set("api", 1)
    rollouts.reaches("api", ready=1)
    autoscaling = client.AutoscalingV2Api(admin_api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(rollouts.ns, _hpa("api", 3, 6))

    # No metrics server: the HPA controller only enforces its bounds, raising 1 to 3.
    replicas = rollouts.reaches("api", ready=3)
    assert replicas.desired_replicas == 1  # what the DeploymentScale asks, shown, not applied
    assert (replicas.condition.status, replicas.condition.reason) == ("False", "ConflictWithHPA")
    with pytest.raises(grpc.RpcError) as refused:
        rollouts.set("api", 2)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "api-hpa" in refused.value.details()
    assert rollouts.apps.read_namespaced_deployment_scale("api", rollouts.ns).spec.replicas == 3

    # Without the HPA, the DeploymentScale's count is applied again.
    autoscaling.delete_namespaced_horizontal_pod_autoscaler("api-hpa", rollouts.ns)
    replicas = rollouts.reaches("api", ready=1)
    assert (replicas.condition.status, replicas.condition.reason) == ("True", "Scaled")


def test_deleting_a_deployment_cascades_to_its_pods_and_keeps_the_deployment_scale(rollouts: Rollouts) -> None:
    rollouts.create("web", 1)
    rollouts.set("web", 3)
    rollouts.reaches("web", ready=3)
    scale = rollouts.custom.get_namespaced_custom_object(GROUP, VERSION, rollouts.ns, PLURAL, "web")
    # The DeploymentScale is the caller's desired state, not the Deployment's child: no owner to collect it by.
    assert not scale["metadata"].get("ownerReferences")

    rollouts.apps.delete_namespaced_deployment("web", rollouts.ns)
    # The garbage collector removes the ReplicaSet and, through it, the Pods.
    eventually(lambda: not rollouts.pods("web"), "the Pods collected", timeout=ROLLOUT)
    eventually(lambda: not rollouts.apps.list_namespaced_replica_set(rollouts.ns).items, "the ReplicaSet collected")

    def not_found() -> bool:
        try:
            rollouts.get("web")
        except grpc.RpcError as error:
            return error.code() is grpc.StatusCode.NOT_FOUND
        return False

    eventually(not_found, "GetReplicas to answer NOT_FOUND")
    eventually(
        lambda: any(c["reason"] == "DeploymentNotFound" for c in rollouts.scale_status("web")["conditions"]),
        "the DeploymentScale kept, Ready=False DeploymentNotFound",
    )

    # Re-created, the Deployment gets the kept count again.
    rollouts.apps.create_namespaced_deployment(rollouts.ns, manifests.deployment("web", 1))
    rollouts.reaches("web", ready=3)
