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
    # Too many WatchReplicas streams (429, as grpc-gateway maps it: "try later"); a request body over the HTTP
    # limit raises it with HTTP's own 413 instead (gRPC's own limit gives the same code).
    RESOURCE_EXHAUSTED = (8, 429)
    FAILED_PRECONDITION = (9, 400)
    ABORTED = (10, 409)
    INTERNAL = (13, 500)
    UNAVAILABLE = (14, 503)

    def __init__(self, grpc_code: int, http_status: int) -> None:
        self.grpc_code = grpc_code
        self.http_status = http_status


class ServiceError(Exception):
    """A failure with a message the caller can act on."""

    def __init__(self, code: Code, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # The HTTP status when the code's usual one says less than HTTP can (413 for an oversized body).
        self.http_status = http_status or code.http_status
