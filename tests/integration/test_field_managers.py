"""Every write scalekeeper makes is signed with its field manager, so managedFields (and a GitOps diff) say who.

Without an explicit ``fieldManager`` the apiserver names the writer after its
User-Agent, which for the official client is ``OpenAPI-Generator``: nobody could
tell scalekeeper's changes from any other script's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller_harness import GROUP, PLURAL, VERSION, Cluster, Factory, scale_manifest
from kubernetes import client
from server_harness import ServerProcess, eventually

from polling import eventually_async
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper_dev import manifests

SETUP = "test-setup"  # the field manager of everything the test itself creates


def entries(obj: Any) -> list[dict[str, Any]]:
    """managedFields as plain dicts, from a client model or a dict."""
    if isinstance(obj, dict):
        return list(obj["metadata"].get("managedFields") or [])
    return [client.ApiClient().sanitize_for_serialization(e) for e in obj.metadata.managed_fields or []]


def managers(obj: Any) -> set[tuple[str, str]]:
    """(manager, subresource) of every managedFields entry."""
    return {(e["manager"], e.get("subresource", "")) for e in entries(obj)}


def replicas_owners(obj: Any) -> set[tuple[str, str]]:
    """(manager, subresource) of the entries that own spec.replicas."""
    return {
        (e["manager"], e.get("subresource", ""))
        for e in entries(obj)
        if "f:replicas" in e.get("fieldsV1", {}).get("f:spec", {})
    }


async def test_controller_writes_carry_the_scalekeeper_field_manager(
    cluster: Cluster, start_controller: Factory
) -> None:
    cluster.apps.create_namespaced_deployment(cluster.ns, manifests.deployment("web", 1), field_manager=SETUP)
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, PLURAL, scale_manifest("web", 3), field_manager=SETUP
    )
    controller, _kube, _cache = await start_controller(elector_identity="replica-a")
    await eventually_async(lambda: controller.is_leader, "leading")
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "scaled and reported")

    # The Deployment's /scale write.
    deployment = cluster.apps.read_namespaced_deployment("web", cluster.ns)
    assert deployment.spec.replicas == 3
    assert replicas_owners(deployment) == {("scalekeeper", "scale")}
    # Besides the controller-manager, which writes the rollout's status.
    assert managers(deployment) - {("kube-controller-manager", "status")} == {(SETUP, ""), ("scalekeeper", "scale")}

    # The DeploymentScale's status write; spec stays the creator's.
    dscale = cluster.dscale("web")
    assert managers(dscale) == {(SETUP, ""), ("scalekeeper", "status")}
    assert replicas_owners(dscale) == {(SETUP, "")}

    # The Events.
    def own_events() -> list[Any]:
        return cluster.own_events()

    events = await eventually_async(own_events, "scalekeeper's Events")
    assert {frozenset(managers(e)) for e in events} == {frozenset({("scalekeeper", "")})}

    # The Lease: created, then renewed (an update) at least once.
    def renewed() -> Any:
        lease = cluster.coordination.read_namespaced_lease("scalekeeper-controller", cluster.ns)
        return lease if lease.spec.renew_time != lease.spec.acquire_time else None

    lease = await eventually_async(renewed, "the Lease renewed")
    assert managers(lease) == {("scalekeeper", "")}


def test_set_replicas_writes_carry_the_scalekeeper_field_manager(
    scalekeeper_server: ServerProcess,
    admin_api: client.ApiClient,
    namespace: str,
    deployments: Callable[..., list[str]],
) -> None:
    """Each way SetReplicas writes the DeploymentScale: create, apply, conditional patch."""
    deployments(namespace, ["created", "applied", "patched"])
    stub = scalekeeper_server.stub("writer")
    custom = client.CustomObjectsApi(admin_api)

    def dscale(name: str) -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return obj

    def set_replicas(name: str, replicas: int, expected: str | None = None) -> pb.Replicas:
        request = pb.SetReplicasRequest(namespace=namespace, name=name, replicas=replicas)
        if expected is not None:
            request.expected_desired_version = expected
        return stub.SetReplicas(request, timeout=15)

    for name in ("created", "applied", "patched"):
        get = pb.GetReplicasRequest(namespace=namespace, name=name)
        eventually(lambda get=get: stub.GetReplicas(get), f"{name} in the server's cache")

    set_replicas("created", 2, expected="")  # create-only
    assert managers(dscale("created")) == {("scalekeeper", "")}

    set_replicas("applied", 2)  # last write wins
    assert replicas_owners(dscale("applied")) == {("scalekeeper", "")}

    first = set_replicas("patched", 2, expected="")
    set_replicas("patched", 5, expected=first.desired_version)  # conditional
    stored = dscale("patched")
    assert stored["spec"]["replicas"] == 5
    assert managers(stored) == {("scalekeeper", "")}
