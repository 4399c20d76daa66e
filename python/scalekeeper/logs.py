"""Structured logs: one JSON object per line on stderr.

Log collectors (Loki, Cloud Logging, ...) index JSON fields, so every record
carries its ``extra={...}`` fields at the top level. ``log_call`` writes the
access-log line of an API call: method, identity, code and latency.

Successful reads are logged at DEBUG, not INFO: they are the bulk of the
traffic, the request metrics already count them, and formatting a JSON line
per read cost over a tenth of the server's CPU under load (``make bench``, the
same GetReplicas load with and without ``--log-level=WARNING``, when reads
were still logged at INFO).
Writes and every failure are logged at INFO and WARNING.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

# Attributes every LogRecord has; anything else came from ``extra=`` and is emitted as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

access_log = logging.getLogger("scalekeeper.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def setup(level: str = "INFO") -> None:
    """Route every logger (ours, grpc's, aiohttp's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates ours, in another format.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


READ_METHODS = frozenset({"GetReplicas", "ListDeployments", "WatchReplicas"})


def log_call(transport: str, method: str, identity: str, code: str, latency_ms: float) -> None:
    if code == "CANCELLED" and method in READ_METHODS:
        # The client went away (every watch ends so): nothing for an operator to act on.
        level = logging.DEBUG
    elif code != "OK":
        level = logging.WARNING
    elif method in READ_METHODS:
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "call",
        extra={
            "transport": transport,
            "method": method,
            "identity": identity,
            "code": code,
            "latency_ms": round(latency_ms, 3),
        },
    )
