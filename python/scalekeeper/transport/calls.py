"""What both API transports share: who is calling, how a failure is answered, how a call is accounted.

Keeping this out of the two transports is what makes them behave the same:
the same identity rules, the same codes, the same "internal error, retry"
for bugs, the same metrics and one access-log line per call.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalekeeper import logs, metrics
from scalekeeper.errors import Code, ServiceError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error, retry"


@dataclass(frozen=True)
class Failure:
    code: str  # gRPC status name, e.g. "NOT_FOUND"
    http_status: int
    message: str


def classify(error: BaseException) -> Failure:
    """The answer for an exception: a ServiceError as it is, anything else as a bare UNAVAILABLE."""
    if isinstance(error, ServiceError):
        return Failure(error.code.value[0], error.code.http_status, error.message)
    return Failure(Code.UNAVAILABLE.value[0], Code.UNAVAILABLE.http_status, INTERNAL_MESSAGE)


def invalid_argument(message: str) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, message)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def names_from_grpc_auth_context(auth: Mapping[str, Sequence[bytes]]) -> frozenset[str]:
    """Identity names from ``ServicerContext.auth_context()`` of a verified mTLS peer.

    grpc fills ``peer_uri``/``peer_dns`` with the URI/DNS SANs (IP and e-mail
    SANs only appear in ``x509_subject_alternative_name``, and are not
    identities here) and ``x509_common_name`` with the subject CN.
    """
    names: set[str] = set()
    for key in ("peer_uri", "peer_dns", "x509_common_name"):
        names.update(_text(value) for value in auth.get(key, ()))
    return frozenset(name for name in names if name)


def names_from_peercert(peercert: Mapping[str, Any] | None) -> frozenset[str]:
    """Identity names from ``SSLObject.getpeercert()`` (a verified certificate, decoded by Python)."""
    if not peercert:
        return frozenset()
    names: set[str] = set()
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("URI", "DNS"):
            names.add(value)
    subject: Iterable[Iterable[tuple[str, str]]] = peercert.get("subject", ())
    for rdn in subject:
        for attribute, value in rdn:
            if attribute == "commonName":
                names.add(value)
    return frozenset(name for name in names if name)


@functools.cache
def _in_flight(transport: str) -> Any:
    # Resolving a labelled child takes a lock and a dict look-up; the label sets are few and fixed.
    return metrics.IN_FLIGHT.labels(transport)


@functools.cache
def _outcome_series(transport: str, method: str, code: str) -> tuple[Any, Any]:
    return metrics.REQUESTS.labels(transport, method, code), metrics.REQUEST_LATENCY.labels(transport, method, code)


class CallRecord:
    """Times one call and, when finished, counts it and writes its access-log line."""

    def __init__(self, transport: str, method: str, identity: str) -> None:
        self.transport = transport
        self.method = method
        self.identity = identity
        self._start = time.perf_counter()
        self._done = False
        _in_flight(transport).inc()

    def finish(self, code: str) -> None:
        if self._done:
            return
        self._done = True
        _in_flight(self.transport).dec()
        elapsed = time.perf_counter() - self._start
        requests, latency = _outcome_series(self.transport, self.method, code)
        requests.inc()
        latency.observe(elapsed)
        logs.log_call(self.transport, self.method, self.identity, code, elapsed * 1000)

    def fail(self, error: BaseException) -> Failure:
        """Classify, log unexpected errors with their traceback, and finish."""
        failure = classify(error)
        if not isinstance(error, ServiceError):
            log.error(
                "unexpected error in %s",
                self.method,
                exc_info=error,
                extra={"transport": self.transport, "method": self.method, "identity": self.identity},
            )
        self.finish(failure.code)
        return failure
