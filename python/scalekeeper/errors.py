"""Failures as the API reports them, independent of the transport.

The service layer raises ``ServiceError`` with one of these codes; the gRPC
transport turns it into a status and the HTTP transport into a status line and
a JSON body. Anything else escaping a handler is a bug: transports answer
INTERNAL with a correlation id that is also in the ERROR log line, and never
UNAVAILABLE, since retrying a deterministic failure only adds load.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """A gRPC status (the member name), with its numeric code and the HTTP status grpc-gateway maps it to."""

    INVALID_ARGUMENT = (3, 400)
    NOT_FOUND = (5, 404)
    PERMISSION_DENIED = (7, 403)
    # A request body over the HTTP limit (gRPC's own limit gives the same code). grpc-gateway says 429, which
    # means "slow down"; nothing here is rate-limited, and 413 is HTTP's status for exactly this.
    RESOURCE_EXHAUSTED = (8, 413)
    FAILED_PRECONDITION = (9, 400)
    ABORTED = (10, 409)
    INTERNAL = (13, 500)
    UNAVAILABLE = (14, 503)

    def __init__(self, grpc_code: int, http_status: int) -> None:
        self.grpc_code = grpc_code
        self.http_status = http_status


class ServiceError(Exception):
    """A failure with a message the caller can act on."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
