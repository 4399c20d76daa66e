"""Keep the garbage collector's passes short: they stop the event loop, and with it every call and stream.

Measured under ``make bench``'s 1,000 watch streams with Python's defaults:
full (generation 2) passes of 40-110 ms over 70,000-180,000 tracked objects,
during which no call, probe or stream was served. Two changes, once the
cache has synced:

- ``gc.freeze()``: what exists by then (modules, classes, the cache's view of
  every Deployment; the imports alone are 68,000 objects) lives until
  shutdown or is freed by its reference count, so no pass needs to walk it.
- A young generation of 10,000 allocations instead of 700: a call allocates
  on the order of a hundred tracked objects, so at 700 a young pass ran every
  few calls and promoted the objects of calls and streams in flight, which
  full passes then walked. With both, the longest pause under the same load
  was a 12 ms young pass; server CPU per call did not change measurably.

TODO: objects created later (open streams, views that replaced frozen ones)
are still walked by full passes; Python 3.14's incremental collector makes
such a pass short and would make this module unnecessary.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

YOUNG_GENERATION_THRESHOLD = 10_000


async def tune_once_synced(wait_synced: Callable[[], Awaitable[None]]) -> None:
    await wait_synced()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *older)
    log.info("froze the start-up heap", extra={"objects": gc.get_freeze_count(), "thresholds": gc.get_threshold()})
