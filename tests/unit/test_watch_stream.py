"""WatchReplicas streams over the change log: exactly-once paging under churn, slow readers cut off."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from scalekeeper.cache.projections import DeploymentView, Key, ScaleView
from scalekeeper.cache.store import EventType, Store
from scalekeeper.errors import Code, ServiceError
from scalekeeper.service.feed import ReplicasChange, ReplicasFeed
from scalekeeper.service.watch import PAGE_SIZE, WatchStream
from scalekeeper.v1 import replicas_pb2 as pb

# Sorts before every other key: added once paging is under way, it arrives only through the
# log, after every change made before it (the log is delivered in order).
SENTINEL: Key = ("!", "end")


def deployment(key: Key, replicas: int) -> DeploymentView:
    return DeploymentView(key[0], key[1], str(replicas), replicas, 0, 0)


def scale(key: Key, desired: int) -> ScaleView:
    return ScaleView(
        namespace=key[0],
        name=key[1],
        uid=f"uid-{key[1]}",
        resource_version=str(desired),
        generation=1,
        desired_replicas=desired,
        observed_generation=0,
        status_replicas=0,
        status_ready_replicas=0,
        conditions=(),
    )


def feed_with(count: int, capacity: int = 1_000_000) -> ReplicasFeed:
    deployments: Store[DeploymentView] = Store("deployments")
    scales: Store[ScaleView] = Store("deploymentscales")
    deployments.replace(deployment((f"ns-{i % 1000:04d}", f"d-{i:06d}"), 1) for i in range(count))
    return ReplicasFeed(deployments, scales, capacity=capacity)


def open_stream(feed: ReplicasFeed, namespace: str = "") -> AsyncIterator[ReplicasChange]:
    return WatchStream(feed, namespace, lambda _stream: None).changes()


class Consumer:
    """What a watch client rebuilds from the events; fails on any event that breaks exactly-once."""

    def __init__(self) -> None:
        self.state: dict[Key, tuple[int, int]] = {}

    def apply(self, change: ReplicasChange) -> None:
        event, replicas = change.message.type, change.message.replicas
        if event == pb.ReplicasEvent.ADDED:
            assert change.key not in self.state, f"ADDED twice: {change.key}"
            self.state[change.key] = (replicas.spec_replicas, replicas.desired_replicas)
        elif event == pb.ReplicasEvent.MODIFIED:
            assert change.key in self.state, f"MODIFIED before ADDED: {change.key}"
            self.state[change.key] = (replicas.spec_replicas, replicas.desired_replicas)
        else:
            assert self.state.pop(change.key, None) is not None, f"DELETED unknown: {change.key}"


def expected_state(feed: ReplicasFeed) -> dict[Key, tuple[int, int]]:
    state = {}
    for view in feed.deployments.values():
        desired = feed.scales.get(view.key)
        state[view.key] = (view.spec_replicas, desired.desired_replicas if desired else view.spec_replicas)
    return state


async def test_paging_is_exactly_once_while_100000_objects_are_added_removed_and_changed() -> None:
    feed = feed_with(100_000)
    rng = random.Random(14)
    next_name = 0
    stream, consumer = open_stream(feed), Consumer()

    def churn() -> None:
        # Keys all over the key space: before, inside and after the page being read.
        nonlocal next_name
        keys = list(feed.deployments._items) if rng.random() < 0.01 else None
        for _ in range(20):
            roll = rng.random()
            if roll < 0.3:
                next_name += 1
                feed.deployments.apply(
                    EventType.ADDED, deployment((f"ns-{rng.randrange(1000):04d}", f"n-{next_name}"), 1)
                )
                continue
            key = rng.choice(keys) if keys else (f"ns-{rng.randrange(1000):04d}", f"d-{rng.randrange(100_000):06d}")
            current = feed.deployments.get(key)
            if current is None:
                continue
            if roll < 0.5:
                feed.deployments.apply(EventType.DELETED, current)
            elif roll < 0.8:
                feed.deployments.apply(EventType.MODIFIED, deployment(key, current.spec_replicas + 1))
            else:
                feed.scales.apply(EventType.ADDED, scale(key, rng.randrange(50)))

    received = 0
    async for change in stream:
        consumer.apply(change)
        received += 1
        if received % (PAGE_SIZE // 2) == 0 and received < 90_000:
            churn()
        if received == 90_000:
            feed.deployments.apply(EventType.ADDED, deployment(SENTINEL, 1))
        if change.key == SENTINEL:
            break
    await stream.aclose()
    del consumer.state[SENTINEL]
    feed.deployments.apply(EventType.DELETED, deployment(SENTINEL, 1))
    assert consumer.state == expected_state(feed)


async def test_a_namespace_stream_sees_only_its_namespace() -> None:
    feed = feed_with(3000)
    stream, consumer = open_stream(feed, "ns-0007"), Consumer()
    for _ in range(3):
        consumer.apply(await anext(stream))
    feed.deployments.apply(EventType.MODIFIED, deployment(("ns-0008", "d-000008"), 5))
    feed.deployments.apply(EventType.MODIFIED, deployment(("ns-0007", "d-000007"), 5))
    change = await anext(stream)
    assert (change.key, change.message.type) == (("ns-0007", "d-000007"), pb.ReplicasEvent.MODIFIED)
    assert set(consumer.state) == {("ns-0007", f"d-{i:06d}") for i in (7, 1007, 2007)}


async def test_a_slow_stream_is_cut_off_with_aborted_and_the_others_get_every_change() -> None:
    feed = feed_with(1, capacity=100)
    key = ("ns-0000", "d-000000")
    slow, fast = open_stream(feed), open_stream(feed)
    for stream in (slow, fast):
        assert (await anext(stream)).message.type == pb.ReplicasEvent.ADDED
    seen = []
    for replicas in range(2, 152):
        feed.deployments.apply(EventType.MODIFIED, deployment(key, replicas))
        seen.append((await anext(fast)).message.replicas.spec_replicas)
    assert seen == list(range(2, 152))
    with pytest.raises(ServiceError) as cut_off:
        await anext(slow)
    assert cut_off.value.code is Code.ABORTED
    assert "watch again" in cut_off.value.message


async def test_streams_end_when_the_feed_closes() -> None:
    feed = feed_with(1)
    stream = open_stream(feed)
    await anext(stream)
    feed.close()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


def test_each_change_is_built_and_serialized_once_for_every_stream() -> None:
    feed = feed_with(1)
    feed.deployments.apply(EventType.MODIFIED, deployment(("ns-0000", "d-000000"), 3))
    [(_, change)] = feed.log.read(0, 10)
    assert change.wire is change.wire
    assert pb.ReplicasEvent.FromString(change.wire) == change.message


def test_the_api_view_is_built_once_per_change_and_follows_both_kinds() -> None:
    feed = feed_with(1)
    key = ("ns-0000", "d-000000")
    first = feed.replicas(key)
    assert first is not None
    assert feed.replicas(key) is first  # no change, no new message
    feed.scales.apply(EventType.ADDED, scale(key, 7))
    managed = feed.replicas(key)
    assert managed is not None
    assert (managed.managed, managed.desired_replicas) == (True, 7)
    feed.deployments.apply(EventType.DELETED, deployment(key, 1))
    assert feed.replicas(key) is None


async def test_a_sleeping_namespace_stream_skips_churn_elsewhere_without_falling_behind() -> None:
    feed = feed_with(2, capacity=10)
    mine, other = ("ns-0000", "d-000000"), ("ns-0001", "d-000001")
    stream = open_stream(feed, "ns-0000")
    assert (await anext(stream)).key == mine
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # let it go to sleep on its namespace
    for replicas in range(2, 40):  # far more than the ring holds, all in another namespace
        feed.deployments.apply(EventType.MODIFIED, deployment(other, replicas))
    await asyncio.sleep(0)
    assert not waiting.done()
    feed.deployments.apply(EventType.MODIFIED, deployment(mine, 7))
    change = await asyncio.wait_for(waiting, timeout=5)
    assert (change.key, change.message.replicas.spec_replicas) == (mine, 7)
