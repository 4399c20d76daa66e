"""The change log: a bounded ring with sequence numbers, read by cursors at their own pace."""

from __future__ import annotations

import asyncio

import pytest

from scalekeeper.cache.changelog import ChangeLog, FellBehind


def test_read_returns_changes_after_the_cursor_in_order_and_bounded() -> None:
    log: ChangeLog[str] = ChangeLog(capacity=4)
    for change in "abc":
        log.append(change)
    assert log.read(0, 10) == [(1, "a"), (2, "b"), (3, "c")]
    assert log.read(1, 1) == [(2, "b")]
    assert log.read(3, 10) == []


def test_a_cursor_the_ring_overwrote_fell_behind_while_others_read_on() -> None:
    log: ChangeLog[int] = ChangeLog(capacity=3)
    for change in range(1, 6):
        log.append(change)
    assert log.first_seq == 3
    with pytest.raises(FellBehind):
        log.read(1, 10)  # change 2 is gone
    assert log.read(2, 10) == [(3, 3), (4, 4), (5, 5)]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ChangeLog(capacity=0)


async def test_waiters_wake_on_append_and_on_close() -> None:
    log: ChangeLog[str] = ChangeLog(capacity=8)
    waiters = [asyncio.create_task(log.wait_after(0)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    log.append("x")
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)

    closing = asyncio.create_task(log.wait_after(log.last_seq))
    await asyncio.sleep(0)
    assert not closing.done()
    log.close()
    await asyncio.wait_for(closing, timeout=5)
    assert log.closed
