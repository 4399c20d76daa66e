"""Prometheus collectors, defined once so that every module increments the same series.

Served on the health port's /metrics. Label values are bounded: transports
and methods are fixed sets, codes come from ``errors.Code`` plus OK, kinds
are the three cached kinds. Never label by namespace, name or identity.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "scalekeeper_requests_total",
    "API calls handled, by transport (grpc, http), method and result code.",
    ["transport", "method", "code"],
)
REQUEST_LATENCY = Histogram(
    "scalekeeper_request_duration_seconds",
    "API call latency; for WatchReplicas the lifetime of the stream.",
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

READY = Gauge("scalekeeper_ready", "1 when the API is ready to serve (same as /readyz), else 0.")
TLS_RELOADS = Counter("scalekeeper_tls_reloads_total", "Server TLS files reloaded after a change.")
