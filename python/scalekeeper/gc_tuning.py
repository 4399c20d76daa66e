"""Keep the garbage collector's full passes short: what lives as long as the process is frozen.

A full (generation 2) collection walks every object the collector tracks,
and Python 3.11 does it in one go with the event loop stopped. Under ``make
bench``'s 1,000 watch streams it took 40-110 ms with 70,000-180,000 tracked
objects (the imported modules alone are 68,000), during which no call, probe
or stream was served. What exists once the cache has synced (modules,
classes, the cache's view of every Deployment) lives until shutdown or is
freed by its reference count, so ``gc.freeze()`` moves it out of the
collector's sight and later passes walk only what was created since.

TODO: objects created later (open streams, views that replaced frozen ones)
are walked by every full pass again; Python 3.14's incremental collector
makes such a pass short, and would make this module unnecessary.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def freeze_once_synced(wait_synced: Callable[[], Awaitable[None]]) -> None:
    await wait_synced()
    gc.freeze()
    log.info("froze the start-up heap", extra={"objects": gc.get_freeze_count()})
