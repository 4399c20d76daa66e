"""Shared pytest fixtures: the Kubernetes cluster integration tests run against.

Tests under ``tests/integration`` are marked ``integration`` automatically.
The cluster is started once per session, on first use (unit tests never pay
for it): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
KWOK's fake nodes from :mod:`scalekeeper_dev.controlplane`, or
an existing cluster when ``SCALEKEEPER_TEST_KUBECONFIG`` is set (see
:mod:`scalekeeper_dev.testcluster` for kind).

Fixtures:

``test_cluster``
    :class:`~scalekeeper_dev.testcluster.TestCluster`: ``admin_kubeconfig``,
    ``server``, ``user_kubeconfig(user, groups)``,
    ``service_account_kubeconfig(ns, name)``, ``service_account_token(...)``.
``control_plane``
    the local :class:`~scalekeeper_dev.controlplane.ControlPlane`, for fault
    injection (restart/pause the apiserver, compact etcd); skips the test on
    an external cluster.
``admin_api``
    a sync ``kubernetes.client.ApiClient`` as cluster admin (setup/assertions).
``namespace``
    a fresh namespace for one test, deleted afterwards.
``api_as``
    factory ``api_as(user, groups=()) -> ApiClient`` acting as that user.
``api_as_service_account``
    factory ``api_as_service_account(namespace, name) -> ApiClient``; creates
    the ServiceAccount if missing and authenticates with a TokenRequest token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from scalekeeper_dev.controlplane import ControlPlane
    from scalekeeper_dev.testcluster import TestCluster

_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _api_client(kubeconfig: Path) -> ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


_CLUSTER_STARTUP = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """How long the session's cluster took to start: its share of the run, visible in every run's output."""
    if _CLUSTER_STARTUP in config.stash:
        terminalreporter.write_line(f"local cluster {config.stash[_CLUSTER_STARTUP]}")


@pytest.fixture(scope="session")
def test_cluster(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[TestCluster]:
    from scalekeeper_dev.controlplane import ControlPlane
    from scalekeeper_dev.testcluster import TestCluster, external_kubeconfig_from_env

    credentials = tmp_path_factory.mktemp("kube-credentials")
    external = external_kubeconfig_from_env()
    if external is not None:
        yield TestCluster.external(external, credentials)
        return
    with ControlPlane() as plane:
        pytestconfig.stash[_CLUSTER_STARTUP] = plane.startup_summary()
        yield TestCluster.local(plane, credentials)


@pytest.fixture(scope="session")
def control_plane(test_cluster: TestCluster) -> ControlPlane:
    if test_cluster.control_plane is None:
        pytest.skip("needs the harness's own control plane (SCALEKEEPER_TEST_KUBECONFIG is set)")
    return test_cluster.control_plane


@pytest.fixture(scope="session")
def admin_api(test_cluster: TestCluster) -> Iterator[ApiClient]:
    api = _api_client(test_cluster.admin_kubeconfig)
    yield api
    api.close()


@pytest.fixture
def namespace(admin_api: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from scalekeeper_dev.testcluster import dns_label

    name = dns_label(f"t-{request.node.name}", max_length=50)
    core = client.CoreV1Api(admin_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    # Not waited for: the namespace controller empties it in the background
    # (names are unique, so tests do not collide).
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def api_as(test_cluster: TestCluster) -> Iterator[Callable[..., ApiClient]]:
    from scalekeeper_dev.testcluster import NoClientCA

    clients: list[ApiClient] = []

    def make(user: str, groups: Sequence[str] = ()) -> ApiClient:
        try:
            path = test_cluster.user_kubeconfig(user, groups)
        except NoClientCA as error:
            pytest.skip(str(error))
        api = _api_client(path)
        clients.append(api)
        return api

    yield make
    for api in clients:
        api.close()


@pytest.fixture
def api_as_service_account(test_cluster: TestCluster) -> Iterator[Callable[[str, str], ApiClient]]:
    clients: list[ApiClient] = []

    def make(namespace: str, name: str) -> ApiClient:
        api = _api_client(test_cluster.service_account_kubeconfig(namespace, name))
        clients.append(api)
        return api

    yield make
    for api in clients:
        api.close()


@pytest.fixture(scope="session")
def scalekeeper_crd(admin_api: ApiClient) -> str:
    """The DeploymentScale CRD, installed from the chart's manifest once per session; its name."""
    from scalekeeper_dev.crd import install_crd

    return install_crd(admin_api)
