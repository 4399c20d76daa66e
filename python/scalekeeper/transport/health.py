"""The plaintext health port: /healthz, /readyz and /metrics.

Plaintext because kubelet probes and Prometheus scrapers would otherwise need
client certificates; nothing here reveals cluster data.

* /healthz is liveness: the process and its event loop answer. It never looks
  at the apiserver, so an apiserver outage makes pods unready, not restarted
  in a loop.
* /readyz is readiness: 200 once the cache synced and while it is healthy and
  the process is not shutting down; otherwise 503 with a short reason.
* /metrics is the Prometheus exposition of ``scalekeeper.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from scalekeeper import metrics

# Returns None when ready, else the reason it is not.
ReadinessProbe = Callable[[], str | None]
# Called before each scrape to refresh gauges that are cheaper to compute on demand.
ScrapeHook = Callable[[], None]


def build_app(readiness: ReadinessProbe, on_scrape: ScrapeHook | None = None) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        reason = readiness()
        metrics.READY.set(0 if reason else 1)
        if reason:
            return web.Response(status=503, text=f"not ready: {reason}\n")
        return web.Response(text="ok\n")

    async def scrape(_request: web.Request) -> web.Response:
        if on_scrape is not None:
            on_scrape()
        metrics.READY.set(0 if readiness() else 1)
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app


async def start_server(
    readiness: ReadinessProbe, host: str, port: int, on_scrape: ScrapeHook | None = None
) -> web.AppRunner:
    runner = web.AppRunner(build_app(readiness, on_scrape), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
