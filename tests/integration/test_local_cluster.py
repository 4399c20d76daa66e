"""The harness's cluster behaves like a cluster: controllers, scheduler and KWOK's fake nodes.

Checked here first (independently of scalekeeper) so that a broken harness
fails with a clear message instead of as a product bug: Deployments roll out
onto the fake nodes and Pods become Ready, every component acts under an
identity of its own with its RBAC role, the ServiceAccount admission plugin
and controller work, and KWOK's stages are the pinned module's.
"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from polling import eventually
from scalekeeper_dev import kwok, manifests, toolchain
from scalekeeper_dev.clusterpki import KWOK_USER
from scalekeeper_dev.testcluster import TestCluster

ROLLOUT_TIMEOUT = 60.0


def _pods(admin_api: ApiClient, namespace: str) -> list[client.V1Pod]:
    return client.CoreV1Api(admin_api).list_namespaced_pod(namespace).items


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_kwok_stages_are_the_pinned_modules_own() -> None:
    config = kwok.stage_config(toolchain.module_dir("kwok"))
    assert kwok.stage_names(config) == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]


def test_a_deployment_rolls_out_onto_fake_nodes_and_scales_to_zero(admin_api: ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(admin_api)
    apps.create_namespaced_deployment(namespace, manifests.deployment("web", 3))

    def rolled_out() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.ready_replicas == 3 and status.available_replicas == 3

    eventually(rolled_out, "3 ready and available replicas", timeout=ROLLOUT_TIMEOUT)
    pods = _pods(admin_api, namespace)
    assert len(pods) == 3
    fake_nodes = {node.metadata.name for node in client.CoreV1Api(admin_api).list_node().items}
    for pod in pods:
        assert pod.status.phase == "Running"
        assert _ready(pod)
        assert pod.spec.node_name in fake_nodes
        assert pod.status.pod_ip  # from KWOK's pod CIDR
        # Set by the ServiceAccount admission plugin, which is on again.
        assert pod.spec.service_account_name == "default"
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert [rs.metadata.owner_references[0].name for rs in replica_sets] == ["web"]

    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    eventually(lambda: not _pods(admin_api, namespace), "every Pod deleted", timeout=ROLLOUT_TIMEOUT)

    def counts_zero() -> bool:
        # The Deployment's status follows the Pods' deletion a moment later (ReplicaSet, then Deployment sync).
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return not status.ready_replicas and not status.available_replicas

    eventually(counts_zero, "ready and available replicas back to 0", timeout=ROLLOUT_TIMEOUT)


def test_every_new_namespace_gets_a_default_service_account(admin_api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    eventually(
        lambda: core.read_namespaced_service_account("default", namespace),
        "the ServiceAccount controller to create `default`",
        retry_on=(ApiException,),
    )


@pytest.mark.parametrize(
    ("user", "attributes", "allowed"),
    [
        ("system:kube-scheduler", {"resource": "pods", "subresource": "binding", "verb": "create"}, True),
        ("system:kube-scheduler", {"resource": "secrets", "verb": "list"}, False),
        (KWOK_USER, {"resource": "nodes", "subresource": "status", "verb": "patch"}, True),
        (KWOK_USER, {"resource": "pods", "subresource": "status", "verb": "update"}, True),
        (KWOK_USER, {"resource": "secrets", "verb": "get"}, False),
        (KWOK_USER, {"group": "apps", "resource": "deployments", "verb": "create"}, False),
        # Its own role lets it read everything and mint its controllers' tokens, not write workloads:
        # the controllers write as their ServiceAccounts.
        (
            "system:kube-controller-manager",
            {"resource": "serviceaccounts", "subresource": "token", "verb": "create"},
            True,
        ),
        ("system:kube-controller-manager", {"group": "apps", "resource": "deployments", "verb": "update"}, False),
    ],
)
def test_components_have_their_own_identity_and_only_their_rbac(
    admin_api: ApiClient, user: str, attributes: dict[str, str], allowed: bool
) -> None:
    review = client.AuthorizationV1Api(admin_api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user, resource_attributes=client.V1ResourceAttributes(**attributes)
            )
        )
    )
    assert review.status.allowed is allowed, review.status


def test_controllers_act_as_their_own_service_accounts(admin_api: ApiClient, test_cluster: TestCluster) -> None:
    """``--use-service-account-credentials``: each controller has a ServiceAccount in kube-system."""
    if not test_cluster.is_local:
        pytest.skip("how an existing cluster runs its controller-manager is its own business")
    core = client.CoreV1Api(admin_api)
    for controller in ("deployment-controller", "replicaset-controller", "generic-garbage-collector"):
        eventually(
            lambda name=controller: core.read_namespaced_service_account(name, "kube-system"),
            f"ServiceAccount kube-system/{controller}",
            retry_on=(ApiException,),
        )
