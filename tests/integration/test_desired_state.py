"""Conditional writes of the desired count against the real apiserver: the read-check-write loop of
``service.desired_state`` in the interleavings a server test cannot pin down.

Each test puts a change between the writer's read and its write at a known
point, by holding a view of the object that the change makes stale (as a
cache that is a step behind would) or by making the change from inside our
own client just before a PATCH goes out. Every request that goes out is real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from scalekeeper.cache.projections import ScaleView
from scalekeeper.errors import Code, ServiceError
from scalekeeper.kube.client import KubeClient, connect
from scalekeeper.service.desired_state import MAX_CONDITIONAL_ATTEMPTS, DesiredStateWriter
from scalekeeper.service.versions import DesiredVersion
from scalekeeper_dev.testcluster import TestCluster

GROUP, VERSION, PLURAL, NAME = "scalekeeper.dev", "v1alpha1", "deploymentscales", "web"


@pytest.fixture
async def kube(test_cluster: TestCluster, scalekeeper_crd: str) -> AsyncIterator[KubeClient]:
    kube = await connect(test_cluster.admin_kubeconfig)
    yield kube
    await kube.close()


@pytest.fixture
def custom(admin_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(admin_api)


def _create(custom: client.CustomObjectsApi, namespace: str, replicas: int) -> ScaleView:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeploymentScale", "metadata": {"name": NAME}}
    # As SetReplicas creates it: another field manager's count would be refused (test_gitops_ownership.py).
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body | {"spec": {"replicas": replicas}}, field_manager="scalekeeper"
    )
    return ScaleView.from_object(created)


def _status_write(custom: client.CustomObjectsApi, namespace: str, ready_replicas: int) -> None:
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, NAME, {"status": {"readyReplicas": ready_replicas}}
    )


def _record(kube: KubeClient, before_patch: Any = None) -> list[str]:
    """Record the requests' methods; ``before_patch()`` runs before each PATCH goes out."""
    methods: list[str] = []
    real_request = kube.request

    async def request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        methods.append(method)
        if method == "PATCH" and before_patch is not None:
            before_patch()
        return await real_request(method, path, **kwargs)

    kube.request = request  # type: ignore[method-assign]
    return methods


async def test_a_status_write_between_read_and_write_is_retried(
    kube: KubeClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    cached = _create(custom, namespace, 2)
    _status_write(custom, namespace, 1)  # the cached view is now a resourceVersion behind, same generation
    methods = _record(kube)
    stored = await DesiredStateWriter(kube).write(namespace, NAME, 5, DesiredVersion.of(cached), cached)
    assert methods == ["PATCH", "GET", "PATCH"]  # 409 on the stale resourceVersion, re-read, accepted
    assert stored.desired_replicas == 5
    assert DesiredVersion.of(stored) == DesiredVersion(cached.uid, cached.generation + 1)


async def test_a_spec_change_between_read_and_write_is_aborted(
    kube: KubeClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    cached = _create(custom, namespace, 2)
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME, {"spec": {"replicas": 3}})
    methods = _record(kube)
    with pytest.raises(ServiceError) as caught:
        await DesiredStateWriter(kube).write(namespace, NAME, 5, DesiredVersion.of(cached), cached)
    assert caught.value.code is Code.ABORTED
    assert methods == ["PATCH", "GET"]
    assert custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)["spec"]["replicas"] == 3


async def test_a_version_the_cache_does_not_show_yet_is_read_from_the_apiserver(
    kube: KubeClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = _create(custom, namespace, 2)
    methods = _record(kube)
    stored = await DesiredStateWriter(kube).write(namespace, NAME, 4, DesiredVersion.of(created), cached=None)
    assert methods == ["GET", "PATCH"]
    assert stored.desired_replicas == 4


async def test_an_object_whose_status_changes_before_every_write_is_unavailable_not_aborted(
    kube: KubeClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    cached = _create(custom, namespace, 2)
    writes = iter(range(1, 100))
    methods = _record(kube, before_patch=lambda: _status_write(custom, namespace, next(writes)))
    with pytest.raises(ServiceError) as caught:
        await DesiredStateWriter(kube).write(namespace, NAME, 5, DesiredVersion.of(cached), cached)
    assert caught.value.code is Code.UNAVAILABLE
    assert methods.count("PATCH") == MAX_CONDITIONAL_ATTEMPTS
    assert custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)["spec"]["replicas"] == 2
