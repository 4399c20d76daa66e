"""Event-loop lag, sampled: how late a timer set for now+10 ms actually fires.

Everything in the server shares one event loop, so any synchronous step that
runs long (a big snapshot, a burst of changes, a JSON encode) delays every
call, health probe and watch at once. The histogram makes such stalls visible
in /metrics; ``make bench`` reads it under load.
"""

from __future__ import annotations

import asyncio

from scalekeeper import metrics

INTERVAL_SECONDS = 0.01


async def sample_forever(interval: float = INTERVAL_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    observe = metrics.EVENT_LOOP_LAG.observe
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))
