"""The controller's work queue: de-duplication, one worker per key, backoff, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from polling import eventually_async
from scalekeeper.controller.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=10))  # type: ignore[arg-type]


def test_fifo_and_deduplication() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for item in ["a", "b", "a", "c", "b"]:
            queue.add(item)
        assert len(queue) == 3
        assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]

    run(scenario())


def test_item_added_while_processing_is_requeued_on_done_not_handed_out_twice() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        item = await queue.get()
        queue.add("a")
        queue.add("a")
        assert len(queue) == 0  # dirty, but not available while "a" is processing
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        assert not second.done()
        queue.done(item)
        assert await asyncio.wait_for(second, 1) == "a"
        queue.done("a")
        assert len(queue) == 0  # both re-adds collapsed into one

    run(scenario())


def test_never_two_workers_on_one_key() -> None:
    async def scenario() -> None:
        queue: WorkQueue[int] = WorkQueue()
        active: set[int] = set()
        synced: list[int] = []

        async def worker() -> None:
            while True:
                try:
                    key = await queue.get()
                except QueueShutDown:
                    return
                assert key not in active
                active.add(key)
                await asyncio.sleep(0.001)
                synced.append(key)
                active.discard(key)
                queue.done(key)

        workers = [asyncio.create_task(worker()) for _ in range(4)]
        for round_ in range(50):
            for key in range(5):
                queue.add(key)
            if round_ % 5 == 0:
                await asyncio.sleep(0.002)
        await eventually_async(lambda: len(queue) == 0 and queue.processing == 0, "the queue drained", timeout=5)
        queue.shut_down()
        await asyncio.gather(*workers)
        assert set(synced) == set(range(5))
        assert len(synced) < 250  # de-duplicated

    run(scenario())


def test_add_after_and_earliest_wins() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        queue.add_after("late", 60)
        queue.add_after("late", 0.01)  # earlier: replaces
        queue.add_after("late", 30)  # later: ignored
        assert queue.delayed == 1
        start = loop.time()
        assert await queue.get() == "late"
        assert 0.005 <= loop.time() - start < 5
        assert queue.delayed == 0

    run(scenario())


def test_rate_limited_backoff_doubles_and_forget_resets() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base_delay=0.005, max_delay=0.04)
    assert [backoff.when("a") for _ in range(6)] == [0.005, 0.01, 0.02, 0.04, 0.04, 0.04]
    assert backoff.failures("a") == 6
    assert backoff.when("b") == 0.005  # per item
    backoff.forget("a")
    assert backoff.when("a") == 0.005
    huge: ExponentialBackoff[str] = ExponentialBackoff(base_delay=0.005, max_delay=60)
    for _ in range(3000):
        delay = huge.when("x")
    assert delay == 60


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ExponentialBackoff(base_delay=0)
    with pytest.raises(ValueError, match="base_delay"):
        ExponentialBackoff(base_delay=2, max_delay=1)


def test_add_rate_limited_delays_and_counts_requeues() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(ExponentialBackoff(base_delay=0.02, max_delay=1))
        queue.add_rate_limited("a")
        assert len(queue) == 0
        assert queue.num_requeues("a") == 1
        assert await queue.get() == "a"
        queue.done("a")
        queue.forget("a")
        assert queue.num_requeues("a") == 0

    run(scenario())


def test_shutdown_wakes_waiting_workers_and_drops_pending_work() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        waiting = [asyncio.create_task(queue.get()) for _ in range(3)]
        await asyncio.sleep(0.01)
        queue.add_after("later", 60)
        queue.shut_down()
        for task in waiting:
            with pytest.raises(QueueShutDown):
                await task
        assert queue.delayed == 0
        queue.add("x")
        queue.add_after("y", 0.001)
        assert len(queue) == 0
        with pytest.raises(QueueShutDown):
            await queue.get()

    run(scenario())


def test_cancelled_waiter_does_not_swallow_the_wakeup() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        queue.add("a")
        first.cancel()  # woken and cancelled before it ran
        assert await asyncio.wait_for(second, 1) == "a"
        with pytest.raises(asyncio.CancelledError):
            await first

    run(scenario())
