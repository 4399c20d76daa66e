"""Prometheus collectors, defined once so that every module increments the same series.

Served on the health port's /metrics. Label values are bounded: transports
and methods are fixed sets, codes come from ``errors.Code`` plus OK, kinds
are the three cached kinds. Never label by namespace, name or identity.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# No separate request counter: the histogram's _count is one, and every call pays for each series it updates.
REQUEST_LATENCY = Histogram(
    "scalekeeper_request_duration_seconds",
    "API calls handled, by transport (grpc, http), method and result code, and their latency "
    "(for WatchReplicas the lifetime of the stream); _count counts the calls.",
    ["transport", "method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600),
)
IN_FLIGHT = Gauge("scalekeeper_requests_in_flight", "API calls (and watch streams) in progress.", ["transport"])

CACHE_OBJECTS = Gauge("scalekeeper_cache_objects", "Objects held in the in-memory cache.", ["kind"])
WATCH_RESTARTS = Counter(
    "scalekeeper_watch_restarts_total",
    "Kubernetes watches re-established, by kind and reason (timeout, gone, error, ...).",
    ["kind", "reason"],
)
CACHE_HANDLER_ERRORS = Counter(
    "scalekeeper_cache_handler_errors_total",
    "Cache change handlers that raised (each one is logged with its traceback), by kind.",
    ["kind"],
)
WATCH_STREAMS = Gauge("scalekeeper_watch_streams", "WatchReplicas streams open, both transports together.")
WATCH_STREAMS_CUT_OFF = Counter(
    "scalekeeper_watch_streams_cut_off_total",
    "WatchReplicas streams ended with ABORTED because they fell behind the change log.",
)
EVENTS_DROPPED = Counter(
    "scalekeeper_events_dropped_total",
    "Kubernetes Events not recorded, by reason (queue_full, error).",
    ["reason"],
)
RECONCILES = Counter(
    "scalekeeper_reconciles_total",
    "Controller reconciles, by result (success, error, requeue, ...).",
    ["result"],
)
REPLICA_FIGHTS = Gauge(
    "scalekeeper_replica_fights",
    "DeploymentScales whose Deployment count another field manager keeps setting back "
    "(Ready=False, reason ConflictWithFieldManager); reverts are backed off meanwhile.",
)

EVENT_LOOP_LAG = Histogram(
    "scalekeeper_event_loop_lag_seconds",
    "How much later than due a 10 ms timer fired: the longest the event loop was blocked.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5),
)
EVENT_LOOP_BUSY_LAG = Histogram(
    "scalekeeper_event_loop_busy_lag_seconds",
    "The part of that delay the event loop's thread spent running (a blocking step), not waiting for a core.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5),
)
READY = Gauge("scalekeeper_ready", "1 when the API is ready to serve (same as /readyz), else 0.")
TLS_RELOADS = Counter("scalekeeper_tls_reloads_total", "Server TLS files reloaded after a change.")
