"""Wiring and lifecycle: settings -> Kubernetes client -> cache -> service -> servers, and back down.

Start-up order puts the health port first, so kubelet sees a live process
whose /readyz says 503 while the cache lists; the API ports come up before
the cache synced too, answering UNAVAILABLE until it has (clients retry).

Shutdown (SIGTERM/SIGINT): readiness and grpc health turn NOT_SERVING, both
API ports stop accepting calls and in-flight calls get ``--drain-seconds``;
watch streams are ended cleanly at once (they would never finish on their own,
and their clients reconnect to another replica); then the controller (which
releases its Lease), the cache and the Kubernetes client stop. Exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from scalekeeper import config, gc_tuning, logs, loop_lag, metrics
from scalekeeper.cache.informers import ClusterCache
from scalekeeper.config import Settings
from scalekeeper.controller.controller import Controller
from scalekeeper.controller.leader import LeaderElector, LeaseConfig
from scalekeeper.kube.client import KubeClient, connect
from scalekeeper.service.authz import Authorizer
from scalekeeper.service.desired_state import DesiredStateWriter
from scalekeeper.service.replicas import ReplicaService
from scalekeeper.tls.reloading import CertificateFiles, ReloadingCertificates
from scalekeeper.transport import grpc_api, health, http_api

log = logging.getLogger(__name__)


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._shutting_down = False
        self._service: ReplicaService | None = None
        self._cache: ClusterCache | None = None
        # Undone in reverse order on shutdown, after the API servers drained.
        self._cleanups: list[tuple[str, Callable[[], Any]]] = []

    # -- readiness ---------------------------------------------------------------------------------

    def not_ready_reason(self) -> str | None:
        if self._shutting_down:
            return "shutting down"
        if self._service is None:
            return "starting"
        if not self._service.ready:
            if self._cache is not None and not self._cache.synced:
                return "cache not synced yet"
            problems = self._cache.problems if self._cache is not None else []
            return "cache unhealthy: " + ("; ".join(problems)[:200] or "unknown")
        return None

    def is_ready(self) -> bool:
        return self.not_ready_reason() is None

    def _refresh_cache_gauges(self) -> None:
        if self._cache is None:
            return
        for store in (self._cache.deployments, self._cache.scales, self._cache.hpas):
            metrics.CACHE_OBJECTS.labels(store.kind).set(len(store))

    # -- lifecycle ---------------------------------------------------------------------------------

    def request_stop(self, reason: str = "") -> None:
        if self._stop.is_set():
            log.info("already shutting down", extra={"reason": reason})
            return
        log.info("shutdown requested", extra={"reason": reason})
        self._stop.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    async def run(self) -> int:
        self._install_signal_handlers()
        try:
            servers = await self._start()
            await self._stop.wait()
            await self._shutdown(servers)
        finally:
            await self._run_cleanups()
        return 0

    async def _start(self) -> dict[str, Any]:
        s = self.settings
        certificates = ReloadingCertificates(CertificateFiles(s.tls_cert, s.tls_key, s.tls_client_ca))

        lag_sampler = asyncio.create_task(loop_lag.sample_forever(), name="event loop lag")
        self._cleanups.append(("event loop lag sampler", lag_sampler.cancel))
        health_runner = await health.start_server(
            self.not_ready_reason, s.bind_address, s.health_port, on_scrape=self._refresh_cache_gauges
        )
        self._cleanups.append(("health server", health_runner.cleanup))

        kube = await connect(s.kubeconfig)
        self._cleanups.append(("kubernetes client", kube.close))
        cache = ClusterCache(
            kube,
            namespaces=s.namespaces,
            watch_timeout_seconds=s.watch_timeout_seconds,
            watch_read_timeout_seconds=s.watch_read_timeout_seconds,
        )
        await cache.start()
        self._cache = cache
        self._cleanups.append(("cache", cache.stop))
        gc_tuner = asyncio.create_task(gc_tuning.tune_once_synced(cache.wait_synced), name="gc tuning")
        self._cleanups.append(("gc tuning", gc_tuner.cancel))

        service = ReplicaService(
            cache,
            DesiredStateWriter(kube),
            Authorizer(s.readers, s.writers),
            s.max_replicas,
            max_watch_streams=s.max_watch_streams,
        )
        self._service = service
        self._cleanups.append(("watch streams", service.close))

        grpc_server, grpc_health, grpc_port = grpc_api.build_server(
            service, certificates, f"{_host(s.bind_address)}:{s.grpc_port}", self.is_ready
        )
        await grpc_server.start()
        await grpc_health.start()
        self._cleanups.append(("grpc server", lambda: grpc_server.stop(0)))
        http_runner = await http_api.start_server(service, certificates, s.bind_address, s.http_port, s.drain_seconds)
        self._cleanups.append(("http server", http_runner.cleanup))

        if s.controller:
            controller = await self._start_controller(kube, cache)
            self._cleanups.append(("controller", controller.stop))

        log.info(
            "serving",
            extra={
                "grpc_port": grpc_port,
                "http_port": s.http_port,
                "health_port": s.health_port,
                "namespaces": list(s.namespaces) or "all",
                "controller": s.controller,
            },
        )
        return {"grpc": grpc_server, "grpc_health": grpc_health, "http": http_runner, "service": service}

    async def _start_controller(self, kube: KubeClient, cache: ClusterCache) -> Controller:
        s = self.settings
        elector = None
        if s.leader_election:
            elector = LeaderElector(
                kube, LeaseConfig(namespace=s.leader_election_namespace, name=s.lease_name, identity=s.identity)
            )
        controller = Controller(kube, cache, workers=s.workers, elector=elector, identity=s.identity)
        await controller.start()
        return controller

    async def _shutdown(self, servers: dict[str, Any]) -> None:
        self._shutting_down = True
        metrics.READY.set(0)
        grace = self.settings.drain_seconds
        log.info("draining", extra={"drain_seconds": grace})
        await servers["grpc_health"].shutdown()
        # Both ports stop accepting at once; in-flight calls get the grace period.
        grpc_stopped = asyncio.create_task(servers["grpc"].stop(grace))
        http_stopped = asyncio.create_task(servers["http"].cleanup())
        # Give the servers a turn to stop accepting, then end the watch streams
        # (they end with OK; any later watch call is refused as UNAVAILABLE).
        await asyncio.sleep(0)
        servers["service"].close()
        results = await asyncio.gather(grpc_stopped, http_stopped, return_exceptions=True)
        for name, result in zip(("grpc", "http"), results, strict=True):
            if isinstance(result, BaseException):
                log.error("stopping the %s server failed", name, exc_info=result)
        log.info("drained")

    async def _run_cleanups(self) -> None:
        while self._cleanups:
            name, cleanup = self._cleanups.pop()
            try:
                result = cleanup()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception:
                log.exception("stopping %s failed", name)


def _host(bind_address: str) -> str:
    # grpc wants IPv6 literals in brackets.
    return f"[{bind_address}]" if ":" in bind_address and not bind_address.startswith("[") else bind_address


def main(argv: Sequence[str] | None = None) -> int:
    settings = config.load(argv)
    logs.setup(settings.log_level)
    app = App(settings)
    try:
        return asyncio.run(app.run())
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as error:
        # Unreadable certificates, a port in use, a bad kubeconfig: say so on one line.
        log.error("start-up failed", extra={"error": f"{type(error).__name__}: {error}"})
        return 1
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
