"""Waiters: everyone is woken, in order, but never more than a batch per turn of the event loop."""

from __future__ import annotations

import asyncio

from scalekeeper.cache.waiters import WAKE_BATCH, Waiters


async def test_wake_all_wakes_everyone_a_batch_per_loop_turn() -> None:
    waiters = Waiters()
    woken: list[int] = []

    async def wait(i: int) -> None:
        await waiters.wait()
        woken.append(i)

    count = 3 * WAKE_BATCH + 5
    tasks = [asyncio.create_task(wait(i)) for i in range(count)]
    await asyncio.sleep(0)
    assert len(waiters) == count
    assert not woken
    waiters.wake_all()
    per_turn = []
    async with asyncio.timeout(5):
        while len(woken) < count:
            before = len(woken)
            await asyncio.sleep(0)
            per_turn.append(len(woken) - before)
    assert woken == list(range(count))
    assert max(per_turn) <= WAKE_BATCH, per_turn
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_is_skipped_and_late_waiters_wait_for_the_next_wake() -> None:
    waiters = Waiters()
    cancelled = asyncio.create_task(waiters.wait())
    kept = asyncio.create_task(waiters.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert len(waiters) == 1  # the cancelled one is gone at once, not at the next wake
    waiters.wake_all()
    await asyncio.wait_for(kept, timeout=5)
    assert cancelled.cancelled()

    late = asyncio.create_task(waiters.wait())
    await asyncio.sleep(0)
    assert not late.done()
    assert len(waiters) == 1
    waiters.wake_all()
    await asyncio.wait_for(late, timeout=5)
