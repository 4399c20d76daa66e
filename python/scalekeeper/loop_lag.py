"""Event-loop lag, sampled: how late a timer set for now+10 ms actually fires.

Everything in the server shares one event loop, so any synchronous step that
runs long (a big snapshot, a burst of changes, a JSON encode) delays every
call, health probe and watch at once. Lateness has two causes, though: the
loop was busy, or the process did not get a core (a loaded node). The second
histogram counts only the part of the delay the loop's thread spent running,
which is what a blocking step costs; ``make bench`` reads both under load.
"""

from __future__ import annotations

import asyncio
import time

from scalekeeper import metrics

INTERVAL_SECONDS = 0.01


async def sample_forever(interval: float = INTERVAL_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    late, busy = metrics.EVENT_LOOP_LAG.observe, metrics.EVENT_LOOP_BUSY_LAG.observe
    while True:
        due, cpu = loop.time() + interval, time.thread_time()
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - due)
        late(lag)
        busy(min(lag, time.thread_time() - cpu))
