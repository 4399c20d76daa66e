"""Accounting of one API call: the in-flight gauge, the count and latency of calls, and the access-log line.

Shared by both transports, so a call counts and logs the same way whichever
port it came in on.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from scalekeeper import logs, metrics
from scalekeeper.transport.failures import Failure, failure_for


@functools.cache
def _in_flight(transport: str) -> Any:
    # Resolving a labelled child takes a lock and a dict look-up; the label sets are few and fixed.
    return metrics.IN_FLIGHT.labels(transport)


@functools.cache
def _latency(transport: str, method: str, code: str) -> Any:
    return metrics.REQUEST_LATENCY.labels(transport, method, code)


class CallRecord:
    """Times one call and, when finished, counts it and writes its access-log line."""

    __slots__ = ("_done", "_start", "identity", "method", "transport")

    def __init__(self, transport: str, method: str, identity: str) -> None:
        self.transport = transport
        self.method = method
        self.identity = identity
        self._start = time.perf_counter()
        self._done = False
        _in_flight(transport).inc()

    def finish(self, code: str) -> None:
        """Account the call once, with its outcome: a gRPC status name such as "OK" or "CANCELLED"."""
        if self._done:
            return
        self._done = True
        _in_flight(self.transport).dec()
        elapsed = time.perf_counter() - self._start
        _latency(self.transport, self.method, code).observe(elapsed)
        logs.log_call(self.transport, self.method, self.identity, code, elapsed * 1000)

    def fail(self, error: BaseException) -> Failure:
        """The answer to ``error`` (see ``failures.failure_for``), with the call accounted under its code."""
        failure = failure_for(error, transport=self.transport, method=self.method, identity=self.identity)
        self.finish(failure.code.name)
        return failure
