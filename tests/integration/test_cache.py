"""The list+watch cache against the real apiserver: paging, watching, and recovering from failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes import client

from polling import eventually_async
from scalekeeper import metrics
from scalekeeper.cache.informers import ClusterCache
from scalekeeper.cache.projections import DeploymentView
from scalekeeper.cache.reflector import Reflector
from scalekeeper.cache.store import EventType, Store
from scalekeeper.kube.client import KubeClient, connect
from scalekeeper.kube.resources import DEPLOYMENTS
from scalekeeper_dev import manifests
from scalekeeper_dev.components import Components
from scalekeeper_dev.controlplane import ControlPlane
from scalekeeper_dev.testcluster import TestCluster


@pytest.fixture
async def kube(test_cluster: TestCluster) -> AsyncIterator[KubeClient]:
    kube = await connect(test_cluster.admin_kubeconfig)
    yield kube
    await kube.close()


@pytest.fixture
async def cache(kube: KubeClient, namespace: str, scalekeeper_crd: str) -> AsyncIterator[ClusterCache]:
    # Short watch timeouts so that a stuck watch is noticed within seconds.
    cache = ClusterCache(kube, namespaces=(namespace,), watch_timeout_seconds=2, watch_read_timeout_seconds=4.0)
    await cache.start()
    async with asyncio.timeout(30):
        await cache.wait_synced()
    yield cache
    await cache.stop()


@pytest.mark.parametrize("streaming_list", [True, False], ids=["streaming-list", "paginated-list"])
async def test_initial_list_is_complete(
    kube: KubeClient, admin_api: client.ApiClient, namespace: str, streaming_list: bool
) -> None:
    apps = client.AppsV1Api(admin_api)
    for i in range(7):
        apps.create_namespaced_deployment(namespace, manifests.deployment(f"web-{i}", replicas=i))
    store: Store[DeploymentView] = Store("deployments")
    reflector = Reflector(
        kube,
        DEPLOYMENTS,
        store,
        DeploymentView.from_object,
        namespace=namespace,
        page_size=3,
        streaming_list=streaming_list,
    )
    task = asyncio.create_task(reflector.run())
    try:
        async with asyncio.timeout(30):
            await reflector.listed.wait()
        assert sorted((v.name, v.spec_replicas) for v in store.values()) == [(f"web-{i}", i) for i in range(7)]
        assert reflector.healthy
        # The watch that follows (the streaming list's own, or one from the list's version) sees what comes next.
        apps.patch_namespaced_deployment_scale("web-3", namespace, {"spec": {"replicas": 9}})
        await eventually_async(
            lambda: (view := store.get((namespace, "web-3"))) is not None and view.spec_replicas == 9,
            "the change after the list",
        )
    finally:
        task.cancel()


async def test_an_apiserver_that_refuses_streaming_lists_is_listed_by_pages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "scalekeeper.cache.reflector")
    with ControlPlane(
        tmp_path / "no-watch-list",
        components=Components.APISERVER,
        extra_apiserver_args=["--feature-gates=WatchList=false"],
    ) as plane:
        kube = await connect(plane.kubeconfig)
        try:
            await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "paged"}})
            for i in range(5):
                await kube.request("POST", DEPLOYMENTS.path("paged"), body=manifests.deployment(f"web-{i}", i))
            store: Store[DeploymentView] = Store("deployments")
            reflector = Reflector(kube, DEPLOYMENTS, store, DeploymentView.from_object, page_size=2)
            task = asyncio.create_task(reflector.run())
            try:
                async with asyncio.timeout(30):
                    await reflector.listed.wait()
                assert sorted(v.name for v in store.values()) == [f"web-{i}" for i in range(5)]
                assert reflector.healthy
                assert any("refused a streaming list" in r.getMessage() for r in caplog.records), caplog.text
            finally:
                task.cancel()
        finally:
            await kube.close()


async def test_watch_follows_creates_updates_and_deletes(
    cache: ClusterCache, admin_api: client.ApiClient, namespace: str
):
    apps = client.AppsV1Api(admin_api)
    apps.create_namespaced_deployment(namespace, manifests.deployment("api", replicas=2))
    await eventually_async(
        lambda: cache.deployments.get((namespace, "api")) is not None, "the new Deployment in the cache"
    )
    apps.patch_namespaced_deployment_scale("api", namespace, {"spec": {"replicas": 5}})
    await eventually_async(
        lambda: (view := cache.deployments.get((namespace, "api"))) is not None and view.spec_replicas == 5,
        "the scaled count in the cache",
    )
    apps.delete_namespaced_deployment("api", namespace)
    await eventually_async(lambda: cache.deployments.get((namespace, "api")) is None, "the deletion in the cache")


async def test_watch_stays_healthy_across_server_side_watch_timeouts(cache: ClusterCache, admin_api, namespace: str):
    # watch_timeout_seconds=2: several watches end cleanly and are re-opened meanwhile.
    restarts_before = metrics.WATCH_RESTARTS.labels("deployments", "error")._value.get()
    await asyncio.sleep(0)  # let the reflectors run
    client.AppsV1Api(admin_api).create_namespaced_deployment(namespace, manifests.deployment("late"))
    await eventually_async(lambda: cache.deployments.get((namespace, "late")) is not None, "a change after re-watches")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # observe a window spanning two server-side timeouts
        assert cache.healthy, cache.problems
        await asyncio.sleep(0.1)
    assert metrics.WATCH_RESTARTS.labels("deployments", "error")._value.get() == restarts_before


async def test_apiserver_restart_drops_health_then_resyncs_without_stale_objects(
    cache: ClusterCache, control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str
):
    apps = client.AppsV1Api(admin_api)
    for name in ("keep", "drop"):
        apps.create_namespaced_deployment(namespace, manifests.deployment(name))
    await eventually_async(lambda: len(cache.deployments) == 2, "both Deployments in the cache")

    await asyncio.to_thread(control_plane.stop_apiserver, kill=True)
    await eventually_async(lambda: not cache.healthy, "the cache to notice the apiserver is gone")
    await asyncio.to_thread(control_plane.start_apiserver)
    # Changes made right after the restart, before the cache has necessarily caught up.
    apps.delete_namespaced_deployment("drop", namespace)
    apps.patch_namespaced_deployment_scale("keep", namespace, {"spec": {"replicas": 4}})
    apps.create_namespaced_deployment(namespace, manifests.deployment("new"))

    def caught_up() -> bool:
        keep = cache.deployments.get((namespace, "keep"))
        names = {view.name for view in cache.deployments.values()}
        return cache.healthy and names == {"keep", "new"} and keep is not None and keep.spec_replicas == 4

    await eventually_async(caught_up, "the cache healthy again and equal to the cluster", timeout=60)


async def test_frozen_apiserver_is_detected_by_the_read_timeout(cache: ClusterCache, control_plane: ControlPlane):
    assert cache.healthy
    await asyncio.to_thread(control_plane.pause_apiserver)
    try:
        # watch_read_timeout_seconds=4: a silent watch must be declared stuck soon after.
        await eventually_async(lambda: not cache.healthy, "the stuck watch to be detected", timeout=20)
        assert any("Timeout" in problem or "timeout" in problem for problem in cache.problems), cache.problems
    finally:
        await asyncio.to_thread(control_plane.resume_apiserver)
    await eventually_async(lambda: cache.healthy, "recovery after the apiserver resumes", timeout=60)


async def test_a_handler_that_raises_fails_health_is_logged_and_the_cache_recovers(
    cache: ClusterCache, admin_api: client.ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
):
    failures_left = [1]

    def broken(_event: EventType, _old: DeploymentView | None, new: DeploymentView | None) -> None:
        if new is not None and new.name == "trigger" and failures_left[0]:
            failures_left[0] -= 1
            raise ValueError("a subscriber bug")

    cache.deployments.add_handler(broken)
    apps = client.AppsV1Api(admin_api)
    apps.create_namespaced_deployment(namespace, manifests.deployment("trigger"))
    await eventually_async(lambda: not cache.healthy, "the failure to show in health")
    assert any("handler" in problem for problem in cache.problems), cache.problems
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records), "an ERROR line with its traceback"
    await eventually_async(lambda: cache.healthy, "the reflector to restart and re-list")
    # And it follows the cluster again.
    apps.create_namespaced_deployment(namespace, manifests.deployment("after"))
    await eventually_async(lambda: cache.deployments.get((namespace, "after")) is not None, "a later change")


def _apiserver_watches(control_plane: ControlPlane, resource: str) -> float:
    status, body = control_plane.request("GET", "/metrics", timeout=30.0)
    assert status == 200, body
    total = 0.0
    for line in body["text"].splitlines():
        if line.startswith("apiserver_request_total{") and f'resource="{resource}"' in line and 'verb="WATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_watch_that_closes_at_once_backs_off(apiserver_only: ControlPlane):
    # The apiserver ends each watch after 1 s (its smallest timeout); with min_watch_seconds
    # above that, every watch counts as "closed at once with no event", as a proxy closing
    # watches would make them. Reopened at once, 12 s would see about 12 watches; with the
    # backoff (0.2 s doubling, half of it random) 5 to 7. An apiserver of the test's own:
    # the shared cluster's controller-manager re-opens watches of Deployments too.
    kube = await connect(apiserver_only.kubeconfig)
    store: Store[DeploymentView] = Store("deployments")
    reflector = Reflector(
        kube,
        DEPLOYMENTS,
        store,
        DeploymentView.from_object,
        watch_timeout_seconds=1,
        watch_read_timeout_seconds=10.0,
        min_watch_seconds=30.0,
    )
    before = await asyncio.to_thread(_apiserver_watches, apiserver_only, "deployments")
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.sleep(12)  # the window observed, not a wait for a condition
        watches = await asyncio.to_thread(_apiserver_watches, apiserver_only, "deployments") - before
    finally:
        task.cancel()
        await kube.close()
    assert 1 <= watches <= 7, f"{watches} watch requests in 12 s"
    assert "closed at once" in reflector.last_error or "ended after" in reflector.last_error, reflector.last_error
