"""Failures as the API reports them, independent of the transport.

The service layer raises ``ServiceError`` with one of these codes; the gRPC
transport turns it into a status and the HTTP transport into a status line and
a JSON body. Anything else escaping a handler is a bug: transports log it and
answer UNAVAILABLE without details, so internals never leak.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    # value: (gRPC status name, HTTP status), as grpc-gateway maps them.
    INVALID_ARGUMENT = ("INVALID_ARGUMENT", 400)
    NOT_FOUND = ("NOT_FOUND", 404)
    PERMISSION_DENIED = ("PERMISSION_DENIED", 403)
    FAILED_PRECONDITION = ("FAILED_PRECONDITION", 400)
    ABORTED = ("ABORTED", 409)
    RESOURCE_EXHAUSTED = ("RESOURCE_EXHAUSTED", 429)
    UNAVAILABLE = ("UNAVAILABLE", 503)

    @property
    def http_status(self) -> int:
        return self.value[1]


class ServiceError(Exception):
    """A failure with a message the caller can act on."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
