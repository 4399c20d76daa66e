"""The collector is tuned only once the cache has synced, and then both ways: frozen heap, larger young generation."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from scalekeeper import gc_tuning


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
async def test_the_heap_is_frozen_and_the_young_generation_raised_once_synced() -> None:
    synced = asyncio.Event()
    tuning = asyncio.create_task(gc_tuning.tune_once_synced(synced.wait))
    await asyncio.sleep(0)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] != gc_tuning.YOUNG_GENERATION_THRESHOLD

    synced.set()
    await asyncio.wait_for(tuning, timeout=5)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == gc_tuning.YOUNG_GENERATION_THRESHOLD
