"""The DeploymentScale controller against the real apiserver, run in-process on the test's event loop.

What these tests check is spec.replicas (what the controller writes), the
DeploymentScale's status, Events, and which client wrote what, as the
DeploymentScale, its Deployment and an HPA come, change and go; the Pods that
kube-controller-manager and KWOK then create and make Ready are covered by
test_rollouts.py, kubectl and the CRD's schema by test_controller_kubectl.py,
the Lease by test_controller_leader_election.py. Helpers and what they can
observe: ``controller_harness.py``.
"""

from __future__ import annotations

from controller_harness import GROUP, PLURAL, VERSION, Cluster, Factory, idle

from polling import eventually_async


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
    key = (cluster.ns, "web")

    def caught_up() -> bool:
        # Compared with the cluster's current versions, not those right after the patches:
        # the controller-manager reacts to the Deployment's change with writes of its own.
        scale, deployment = cache.scales.get(key), cache.deployments.get(key)
        return (
            scale is not None
            and deployment is not None
            and scale.resource_version == cluster.dscale("web")["metadata"]["resourceVersion"]
            and deployment.resource_version == cluster.deployment_rv("web")
        )

    await eventually_async(caught_up, "the cache caught up with both changes")
    scale_rv = cluster.dscale("web")["metadata"]["resourceVersion"]
    await eventually_async(lambda: idle(controller), "controller idle after the no-op syncs")

    assert kube.writes == writes
    assert cluster.dscale("web")["metadata"]["resourceVersion"] == scale_rv
    assert cluster.event_reasons("web") == events
