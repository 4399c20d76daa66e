"""GetReplicas' answers, in order: permission, then the request's validity, then readiness, then existence.

The service looks a key up before it validates it (a cached Deployment's key is
valid by construction), so these pin that every request still gets the answer
that validating first would give. Real stores and feed; no apiserver behind them.
"""

from __future__ import annotations

import asyncio

import pytest

from scalekeeper.cache.projections import DeploymentView, ScaleView
from scalekeeper.cache.store import EventType, Store
from scalekeeper.errors import Code, ServiceError
from scalekeeper.service.authz import Authorizer, Identity
from scalekeeper.service.replicas import ReplicaService
from scalekeeper.v1 import replicas_pb2 as pb

READER = Identity(names=frozenset({"reader"}))
STRANGER = Identity(names=frozenset({"stranger"}))


class StoresOnly:
    """What ReplicaService reads of a ClusterCache, with health set by the test."""

    def __init__(self) -> None:
        self.deployments: Store[DeploymentView] = Store("deployments")
        self.scales: Store[ScaleView] = Store("deploymentscales")
        self.healthy = True
        self.synced = True
        self.problems = ["watch of deployments failed"]


@pytest.fixture
def cache() -> StoresOnly:
    return StoresOnly()


@pytest.fixture
def service(cache: StoresOnly) -> ReplicaService:
    service = ReplicaService(cache, None, Authorizer(readers={"reader"}, writers=()), 100)  # type: ignore[arg-type]
    cache.deployments.apply(EventType.ADDED, DeploymentView("web", "api", "7", 3, 2, 2))
    return service


def get(service: ReplicaService, namespace: str, name: str, caller: Identity = READER) -> pb.Replicas:
    return asyncio.run(service.get_replicas(caller, pb.GetReplicasRequest(namespace=namespace, name=name)))


def code_of(service: ReplicaService, namespace: str, name: str, caller: Identity = READER) -> Code:
    with pytest.raises(ServiceError) as raised:
        get(service, namespace, name, caller)
    return raised.value.code


def test_a_cached_deployment_answers_its_shared_view(service: ReplicaService) -> None:
    replicas = get(service, "web", "api")
    assert (replicas.namespace, replicas.name, replicas.spec_replicas, replicas.ready_replicas) == ("web", "api", 3, 2)
    assert not replicas.managed
    assert get(service, "web", "api") is replicas


@pytest.mark.parametrize(
    ("namespace", "name"), [("", "api"), ("Web", "api"), ("web", ""), ("web", "API"), ("web", "a_b")]
)
@pytest.mark.parametrize("healthy", [True, False])
def test_an_invalid_key_is_invalid_argument_whether_or_not_the_cache_is_ready(
    cache: StoresOnly, service: ReplicaService, namespace: str, name: str, healthy: bool
) -> None:
    cache.healthy = healthy
    assert code_of(service, namespace, name) is Code.INVALID_ARGUMENT


def test_a_valid_key_not_cached_is_not_found(service: ReplicaService) -> None:
    assert code_of(service, "web", "gone") is Code.NOT_FOUND


@pytest.mark.parametrize("name", ["api", "gone"])
def test_an_unhealthy_cache_answers_unavailable_even_for_a_cached_key(
    cache: StoresOnly, service: ReplicaService, name: str
) -> None:
    cache.healthy = False
    with pytest.raises(ServiceError) as raised:
        get(service, "web", name)
    assert raised.value.code is Code.UNAVAILABLE
    assert "watch of deployments failed" in raised.value.message


@pytest.mark.parametrize(("namespace", "name"), [("web", "api"), ("", "")])
def test_a_caller_without_the_reader_role_is_denied_first(service: ReplicaService, namespace: str, name: str) -> None:
    assert code_of(service, namespace, name, STRANGER) is Code.PERMISSION_DENIED
