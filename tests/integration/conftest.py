"""Fixtures that run the REAL scalekeeper server (``python -m scalekeeper``) against the test cluster.

The server is a subprocess started with flags exactly as an operator would,
so these tests cover the wiring, the lifecycle (signals, exit code) and the
TLS setup that in-process tests would bypass. Helpers live in
``server_harness.py``.

Fixtures:

``server_pki``
    :class:`ServerPki` (session): a CA, the server certificate, client
    certificates ``writer``, ``reader``, ``stranger`` (no role), ``expired``
    and ``foreign`` (another CA).
``own_pki``
    a fresh :class:`ServerPki` for one test, for tests that replace files.
``scalekeeper_server``
    one ready :class:`ServerProcess` per test module (``--no-controller``,
    the dev reader and writer identities).
``start_server``
    factory ``start_server(*extra_flags, pki_files=None, wait_ready=True, kubeconfig=None)``
    for tests that signal, re-certify or misconfigure a server of their own;
    every server it started is stopped at the end of the test.
``deployments``
    factory ``deployments(namespace, names, replicas=1)`` creating Deployments as admin.
``apiserver_only``
    a :class:`ControlPlane` of the test's own, etcd and kube-apiserver alone (CRD installed), for tests
    that count the apiserver's requests: on the shared cluster its controllers' requests count too.
``make_release``
    factory ``make_release(*settings) -> Release``: the chart installed in the
    test's namespace (chart_releases.py), uninstalled afterwards.
``extra_namespaces``
    factory ``extra_namespaces(count) -> names``, deleted afterwards.
``cluster``
    :class:`controller_harness.Cluster`: admin-side helpers in a fresh namespace, CRD installed.
``transport``, ``api_for``, ``writer``, ``reader``
    parametrized over gRPC and HTTP: ``api_for(role)`` is a :class:`transport_clients.Api` for
    ``scalekeeper_server`` with that client certificate; ``writer`` and ``reader`` are the two roles'.
``start_controller``
    async factory ``start_controller(elector_identity=None, lease=None, fights=None)``: an in-process
    controller (own client and cache) on the test's event loop -> ``(controller, instrumented, cache)``.
``managed``
    for the API edge-case tests: the Deployment ``api_edges_support.NAME`` in the test's namespace,
    its desired count set to 2 through ``scalekeeper_server`` and in its cache; its path on the HTTP mirror.
"""

from __future__ import annotations

# Before anything imports grpc (the harness imports it).
from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()

from collections.abc import AsyncIterator, Callable, Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402
from api_edges_support import NAME as EDGE_NAME  # noqa: E402
from chart_releases import Release, adopt_crd  # noqa: E402
from controller_harness import Cluster, Factory, controller_factory  # noqa: E402
from kubernetes import client  # noqa: E402
from server_harness import (  # noqa: E402
    ServerPki,
    ServerProcess,
    StartServer,
    deployment_manifest,
    eventually,
    server_factory,
)
from transport_clients import TRANSPORTS, Api  # noqa: E402

from scalekeeper.v1 import replicas_pb2 as pb  # noqa: E402
from scalekeeper_dev.components import Components  # noqa: E402
from scalekeeper_dev.controlplane import ControlPlane  # noqa: E402
from scalekeeper_dev.crd import install_crd_on  # noqa: E402
from scalekeeper_dev.testcluster import dns_label as _dns_label  # noqa: E402

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from scalekeeper_dev.testcluster import TestCluster


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPki:
    return ServerPki.create(tmp_path_factory.mktemp("scalekeeper-pki"))


@pytest.fixture
def own_pki(tmp_path: Path) -> ServerPki:
    return ServerPki.create(tmp_path / "pki")


@pytest.fixture
def start_server(
    test_cluster: TestCluster, scalekeeper_crd: str, server_pki: ServerPki, tmp_path: Path
) -> Iterator[StartServer]:
    with server_factory(test_cluster.admin_kubeconfig, server_pki, tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def scalekeeper_server(
    test_cluster: TestCluster,
    scalekeeper_crd: str,
    server_pki: ServerPki,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("scalekeeper-log")
    with server_factory(test_cluster.admin_kubeconfig, server_pki, log_dir) as start:
        yield start()


@pytest.fixture
def apiserver_only(tmp_path: Path) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path / "apiserver-only", components=Components.APISERVER) as plane:
        install_crd_on(plane.kubeconfig)
        yield plane


@pytest.fixture
def deployments(admin_api: ApiClient) -> Callable[..., list[str]]:
    apps = client.AppsV1Api(admin_api)

    def create(namespace: str, names: Sequence[str], replicas: int = 1) -> list[str]:
        for name in names:
            apps.create_namespaced_deployment(namespace, deployment_manifest(name, replicas))
        return list(names)

    return create


@pytest.fixture
def make_release(test_cluster, admin_api, namespace) -> Iterator[Callable[..., Release]]:
    releases: list[Release] = []

    def make(*settings: str) -> Release:
        release = Release(test_cluster.admin_kubeconfig, _dns_label("sk", max_length=20), namespace)
        adopt_crd(admin_api, release)
        releases.append(release)
        release.notes = release.install(*settings)
        return release

    yield make
    for release in releases:
        release.uninstall()


@pytest.fixture
def extra_namespaces(admin_api) -> Iterator[Callable[[int], list[str]]]:
    core = client.CoreV1Api(admin_api)
    created: list[str] = []

    def make(count: int) -> list[str]:
        names = [_dns_label(f"watched-{index}", max_length=30) for index in range(count)]
        for name in names:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            created.append(name)
        return names

    yield make
    for name in created:
        core.delete_namespace(name)


@pytest.fixture
def cluster(admin_api: ApiClient, namespace: str, scalekeeper_crd: str) -> Cluster:
    return Cluster(admin_api, namespace)


@pytest.fixture
async def start_controller(test_cluster: TestCluster, namespace: str, scalekeeper_crd: str) -> AsyncIterator[Factory]:
    async with controller_factory(test_cluster.admin_kubeconfig, namespace) as start:
        yield start


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api_for(scalekeeper_server: ServerProcess, transport: str) -> Callable[[str], Api]:
    return lambda role: TRANSPORTS[transport](scalekeeper_server, role)


@pytest.fixture
def writer(api_for: Callable[[str], Api]) -> Api:
    return api_for("writer")


@pytest.fixture
def reader(api_for: Callable[[str], Api]) -> Api:
    return api_for("reader")


@pytest.fixture
def managed(scalekeeper_server: ServerProcess, namespace: str, deployments: Callable[..., list[str]]) -> str:
    """A Deployment whose desired count is 2; its path on the HTTP mirror."""
    deployments(namespace, [EDGE_NAME], replicas=2)
    stub = scalekeeper_server.stub("writer")
    eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=EDGE_NAME)), "the Deployment")
    stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name=EDGE_NAME, replicas=2), timeout=10)
    # Reads are served from the cache: wait until it holds the DeploymentScale too.
    eventually(
        lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=EDGE_NAME)).desired_version,
        "the DeploymentScale in the cache",
    )
    return f"/v1/namespaces/{namespace}/deployments/{EDGE_NAME}/replicas"
