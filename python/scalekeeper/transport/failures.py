"""How a failed call is answered: the same code and message on both transports.

A ``ServiceError`` is answered as it is. Anything else is a bug in the server:
it is answered INTERNAL (gRPC) / 500 (HTTP), never UNAVAILABLE, because a retry
policy would hammer a failure that is deterministic; the message carries only
a correlation id, and the ERROR log line with the traceback carries the same
id, so a report leads an operator to the exact line without leaking internals.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from scalekeeper.errors import Code, ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    code: Code
    message: str

    @property
    def http_status(self) -> int:
        return self.code.http_status


def invalid_argument(message: str) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, message)


def internal_message(correlation_id: str) -> str:
    return f"internal error {correlation_id}: a bug in scalekeeper; report this id to its operators rather than retry"


def failure_for(error: BaseException, *, transport: str, method: str, identity: str) -> Failure:
    """The answer to ``error``; an unexpected one is logged at ERROR with its traceback and correlation id."""
    if isinstance(error, ServiceError):
        return Failure(error.code, error.message)
    correlation_id = secrets.token_hex(8)
    log.error(
        "unexpected error in %s (correlation id %s)",
        method,
        correlation_id,
        exc_info=error,
        extra={"correlation_id": correlation_id, "transport": transport, "method": method, "identity": identity},
    )
    return Failure(Code.INTERNAL, internal_message(correlation_id))
