"""Waiting in tests: poll a condition until a deadline, never sleep a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
INTERVAL = 0.05


def eventually(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check`` until it returns something truthy, which is returned.

    Exceptions of the ``retry_on`` types count as "not yet"; at the deadline
    the test fails naming ``what`` and the last such exception.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except retry_on as error:
            last_error = error
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error!r}")
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], T], what: str, *, timeout: float = DEFAULT_TIMEOUT, interval: float = INTERVAL
) -> T:
    """``eventually`` for code under test that runs on the test's own event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
