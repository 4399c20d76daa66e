"""Leader election between in-process controllers: only the Lease holder writes, and hand-overs are safe.

Several replicas run the controller at once; these tests check against the
real apiserver's Lease that exactly one of them writes, that a clean stop
releases the Lease so a follower takes over well before it expires, and that
a leader cut off from the apiserver steps down before another one leads, so
two leaders never write at once. Helpers: ``controller_harness.py``.
"""

from __future__ import annotations

import time

from controller_harness import Cluster, Factory

from polling import eventually_async


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
