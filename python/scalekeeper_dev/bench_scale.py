"""Section 5: many Deployments (10,000 in 100 namespaces, then 100,000 in 1,000).

For each size, a fresh server: start to ready, RSS, every page of
ListDeployments, the first page against the last (paging is O(log n + page)),
a new WatchReplicas stream's first event, and GetReplicas against the
100-Deployment case of section 1. Creating the objects is setup, not a
measurement: requests go out concurrently (bounded by a semaphore that
matches the client's connection pool), and the larger size adds to the
smaller one.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENTS
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import manifests
from scalekeeper_dev.bench_env import Certs, Scalekeeper, metric_sum, rss_mib
from scalekeeper_dev.bench_load import Ghz, LoadResult
from scalekeeper_dev.bench_report import MB, Results, Target, best, cpu, ghz_run, log, ms, table

CREATE_CONCURRENCY = 24


async def create_namespace(kube: KubeClient, name: str) -> None:
    try:
        await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    except KubeApiError as error:
        if not error.is_conflict:
            raise


async def create_deployments(kube: KubeClient, namespace: str, names: list[str], *, replicas: int = 1) -> None:
    await create_many(kube, [(namespace, name) for name in names], replicas=replicas)


async def create_many(kube: KubeClient, keys: list[tuple[str, str]], *, replicas: int = 1) -> None:
    """Create Deployments (namespaces must exist); existing ones are kept."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(namespace: str, name: str) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    await kube.request("POST", DEPLOYMENTS.path(namespace), body=manifests.deployment(name, replicas))
                    return
                except KubeApiError as error:
                    if error.is_conflict:
                        return
                    # 429 (apiserver overload protection) or a dropped connection: back off and retry.
                    if error.status not in (0, 429, 500, 503, 504) or attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(create(ns, name) for ns, name in keys))


@dataclass
class ListAllResult:
    seconds: float
    pages: int
    items: int
    last_token: str  # the token that asks for the last page


async def list_all(channel: grpc.aio.Channel, page_size: int) -> ListAllResult:
    """ListDeployments over every page, across all namespaces."""
    stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
    token, last_token, pages, items = "", "", 0, 0
    started = time.perf_counter()
    while True:
        answer = await stub.ListDeployments(pb.ListDeploymentsRequest(page_size=page_size, page_token=token))
        pages += 1
        items += len(answer.deployments)
        last_token, token = token, answer.next_page_token
        if not token:
            break
    return ListAllResult(time.perf_counter() - started, pages, items, last_token)


async def _median_ms(call: Callable[[], object], times: int = 21) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await call()  # type: ignore[misc]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _first_watch_event_ms(stub: replicas_pb2_grpc.ReplicaServiceStub) -> float:
    started = time.perf_counter()
    stream = stub.WatchReplicas(pb.WatchReplicasRequest())
    try:
        await anext(aiter(stream))
        return (time.perf_counter() - started) * 1000
    finally:
        stream.cancel()


@dataclass
class SizeResult:
    namespaces: int
    objects: int
    setup_s: float
    ready_s: float = float("nan")
    cache_objects: float = float("nan")
    rss_ready_mb: float = float("nan")
    rss_peak_mb: float = float("nan")
    list_all: dict[int, ListAllResult] = field(default_factory=dict)
    first_page_ms: float = float("nan")
    last_page_ms: float = float("nan")
    first_watch_event_ms: list[float] = field(default_factory=list)
    load: dict[int, LoadResult] = field(default_factory=dict)


@dataclass
class ScaleResult:
    per_namespace: int
    sizes: list[SizeResult] = field(default_factory=list)


def _keys(namespaces: int, per_namespace: int) -> list[tuple[str, str]]:
    return [(f"bench-scale-{n:03d}", f"deploy-{i:03d}") for n in range(namespaces) for i in range(per_namespace)]


async def measure(
    results: Results,
    kube: KubeClient,
    ghz: Ghz,
    make_server: Callable[..., Scalekeeper],
    certs: Certs,
    *,
    namespace_counts: list[int],
    per_namespace: int,
    duration: str,
    repeat: int,
) -> None:
    results.scale = ScaleResult(per_namespace)
    for namespaces in namespace_counts:
        keys = _keys(namespaces, per_namespace)
        log(f"5. creating {len(keys):,} Deployments in {namespaces} namespaces (setup)")
        started = time.perf_counter()
        await asyncio.gather(*(create_namespace(kube, f"bench-scale-{n:03d}") for n in range(namespaces)))
        await create_many(kube, keys)
        size = SizeResult(namespaces, len(keys), time.perf_counter() - started)
        results.scale.sizes.append(size)
        await _measure_size(size, keys, ghz, make_server, certs, duration=duration, repeat=repeat)


async def _measure_size(
    size: SizeResult,
    keys: list[tuple[str, str]],
    ghz: Ghz,
    make_server: Callable[..., Scalekeeper],
    certs: Certs,
    *,
    duration: str,
    repeat: int,
) -> None:
    log(f"5. {size.objects:,} Deployments: a fresh server, time to ready")
    server = make_server(f"scale-{size.objects}")
    try:
        size.ready_s = server.wait_ready(timeout=600)
        size.rss_ready_mb = rss_mib(server.pid)[0] / MB
        size.cache_objects = metric_sum(server.metrics(), "scalekeeper_cache_objects", kind="deployments")
        channel = grpc.aio.secure_channel(server.target, certs.grpc_credentials("reader"))
        try:
            stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
            for page_size in (100, 1000):
                log(f"5. ListDeployments over all pages of {page_size}")
                size.list_all[page_size] = await list_all(channel, page_size)
            last = size.list_all[100].last_token
            size.first_page_ms = await _median_ms(lambda: stub.ListDeployments(pb.ListDeploymentsRequest()))
            size.last_page_ms = await _median_ms(
                lambda: stub.ListDeployments(pb.ListDeploymentsRequest(page_token=last))
            )
            size.first_watch_event_ms = [await _first_watch_event_ms(stub) for _ in range(5)]
        finally:
            await channel.close()
        chosen = random.Random(7).sample(keys, min(1000, len(keys)))
        messages = [{"namespace": ns, "name": name} for ns, name in chosen]
        for concurrency in (1, 16):
            log(f"5. GetReplicas over {size.objects:,} Deployments at concurrency {concurrency}")
            load = {"concurrency": concurrency, "duration": duration, "data_name": f"get-1000-of-{size.objects}"}
            size.load[concurrency] = best(
                [
                    await ghz_run(ghz, server.target, "GetReplicas", messages, server_pid=server.pid, **load)
                    for _ in range(repeat)
                ]
            )
        size.rss_peak_mb = rss_mib(server.pid)[1] / MB
    finally:
        server.stop()


# (start to ready s, RSS MB) by size: issue 7's for 10,000, issue 14's for 100,000.
TARGET_READY_RSS = {10_000: (10.0, 150.0), 100_000: (30.0, 600.0)}
FLAT_LATENCY_FACTOR = 1.25  # "flat": GetReplicas latency within 25% of the 100-Deployment case
PAGE_FACTOR = 2.0  # the last page of ListDeployments within 2x of the first
TARGET_FIRST_EVENT_MS = 100.0


def _limits(objects: int) -> tuple[float, float]:
    return TARGET_READY_RSS[min(TARGET_READY_RSS, key=lambda n: abs(n - objects))]


def targets(results: Results) -> list[Target]:
    found: list[Target] = []
    small = results.get_replicas(16)[0]
    for size in results.scale.sizes if results.scale else []:
        n = f"{size.objects:,} Deployments"
        ready_limit, rss_limit = _limits(size.objects)
        rss = max(size.rss_ready_mb, size.rss_peak_mb)
        found += [
            Target(
                f"{n}: start to ready", f"< {ready_limit:.0f} s", f"{size.ready_s:.1f} s", size.ready_s < ready_limit
            ),
            Target(f"{n}: server RSS (peak)", f"< {rss_limit:.0f} MB", f"{rss:.0f} MB", rss < rss_limit),
        ]
        large = size.load.get(16)
        if small is not None and large is not None and small.p50_ms and small.p99_ms:
            factor, factor99 = large.p50_ms / small.p50_ms, large.p99_ms / small.p99_ms
            found.append(
                Target(
                    f"GetReplicas latency, {n} vs 100 (c=16)",
                    f"flat (<= {FLAT_LATENCY_FACTOR:.2f}x)",
                    f"p50 {factor:.2f}x, p99 {factor99:.2f}x",
                    max(factor, factor99) <= FLAT_LATENCY_FACTOR,
                )
            )
        pages = size.last_page_ms / size.first_page_ms
        found.append(
            Target(
                f"{n}: last vs first page of ListDeployments",
                f"<= {PAGE_FACTOR:.0f}x",
                f"{ms(size.last_page_ms)} vs {ms(size.first_page_ms)} ({pages:.2f}x)",
                pages <= PAGE_FACTOR,
            )
        )
        if size.first_watch_event_ms:
            worst = max(size.first_watch_event_ms)
            found.append(
                Target(
                    f"{n}: a new WatchReplicas stream's first event (worst of 5)",
                    f"< {TARGET_FIRST_EVENT_MS:.0f} ms",
                    ms(worst),
                    worst < TARGET_FIRST_EVENT_MS,
                )
            )
    return found


def render(results: Results) -> list[str]:
    out: list[str] = []
    small = results.get_replicas
    for size in results.scale.sizes if results.scale else []:
        out += [
            "",
            f"## 5. {size.objects:,} Deployments in {size.namespaces} namespaces",
            "",
            f"Created in {size.setup_s:.0f} s (setup, concurrent requests; not a measurement). Then a fresh server:",
            "",
            f"* process start to `/readyz` 200 (cache synced): **{size.ready_s:.1f} s** "
            f"(with 100 Deployments: {results.small_ready_s:.1f} s); cache holds {size.cache_objects:,.0f} Deployments",
            f"* RSS once ready: **{size.rss_ready_mb:.0f} MB**; peak (VmHWM) after the reads below: "
            f"**{size.rss_peak_mb:.0f} MB** (with 100 Deployments, after sections 1-4: {results.small_rss_mb:.0f} MB)",
            *[
                f"* ListDeployments over all pages of {page_size}: {listed.pages:,} pages, {listed.items:,} "
                f"Deployments in {listed.seconds * 1000:,.0f} ms"
                for page_size, listed in size.list_all.items()
            ],
            f"* one ListDeployments call (page of 100, median of 21): first page {ms(size.first_page_ms)}, "
            f"last page {ms(size.last_page_ms)}",
            "* a new WatchReplicas stream on all namespaces, until its first event (5 streams): "
            + ", ".join(ms(x) for x in size.first_watch_event_ms),
            "",
            f"GetReplicas (1,000 random Deployments of the {size.objects:,}, round-robin) against the "
            "100-Deployment case of section 1:",
            "",
        ]
        rows = []
        for concurrency, large in size.load.items():
            base = small(concurrency)[0]
            rows.append(
                [
                    str(concurrency),
                    *([f"{base.rps:,.0f}", ms(base.p50_ms), ms(base.p99_ms)] if base else ["n/a"] * 3),
                    f"{large.rps:,.0f}",
                    ms(large.p50_ms),
                    ms(large.p99_ms),
                    cpu(large),
                ]
            )
        n = f"{size.objects:,}"
        out += table(
            ["c", "100: req/s", "100: p50", "100: p99", f"{n}: req/s", f"{n}: p50", f"{n}: p99", f"{n}: CPU/call"], rows
        )
    return out
