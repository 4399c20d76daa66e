"""Fixtures for the fault, concurrency and fuzz tests: the real server as a subprocess, as in tests/integration.

The server process, its certificates and TLS clients come from
``tests/integration/server_harness.py`` (one implementation, owned by the
transport tests); the cluster fixtures (``test_cluster``, ``control_plane``,
``admin_api``, ``namespace``, ``scalekeeper_crd``) from ``tests/conftest.py``.

These tests break the shared control plane on purpose (kill, freeze, compact),
so each one restores it in a ``finally`` and waits until it is ready again
before the next test runs. Every test here is marked ``integration``.

Fixtures:

``start_server``
    factory ``start_server(*extra_flags, controller=False, wait_ready=True, kubeconfig=None)``;
    with ``controller=True`` the server runs its controller under a Lease of
    its own (so tests never wait for another test's Lease to expire).
``deployments``
    factory ``deployments(namespace, names, replicas=1)``.
``kube``
    :class:`Kube`, the admin's direct operations on the apiserver (scale a
    Deployment, read it, patch a DeploymentScale).
``fuzz_namespace``, ``fuzz_server``
    for the fuzz tests, one per module: a namespace holding the Deployment
    ``fuzz_support.TARGET``, and the server under fuzz; at the module's end
    ``fuzz_server`` checks the fuzz property (still running and ready, no server
    error logged).
"""

from __future__ import annotations

# Before anything imports grpc: in-process grpc clients follow the server's TLS policy.
from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()

import secrets  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from fuzz_support import TARGET  # noqa: E402
from reliability_helpers import Kube, internal_errors_in_log, readyz  # noqa: E402
from server_harness import ServerPki, ServerProcess, server_factory  # noqa: E402

from scalekeeper_dev import manifests  # noqa: E402

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from scalekeeper_dev.testcluster import TestCluster

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPki:
    return ServerPki.create(tmp_path_factory.mktemp("reliability-pki"))


@pytest.fixture
def start_server(
    test_cluster: TestCluster, scalekeeper_crd: str, server_pki: ServerPki, tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    with server_factory(test_cluster.admin_kubeconfig, server_pki, tmp_path) as start:

        def start_with(
            *flags: str, controller: bool = False, wait_ready: bool = True, kubeconfig: Path | None = None
        ) -> ServerProcess:
            extra = list(flags)
            if controller:
                extra += [
                    "--controller",
                    f"--lease-name=reliability-{secrets.token_hex(4)}",
                    "--leader-election-namespace=default",
                ]
            return start(*extra, wait_ready=wait_ready, kubeconfig=kubeconfig)

        yield start_with


@pytest.fixture
def deployments(admin_api: ApiClient) -> Callable[..., list[str]]:
    from kubernetes import client

    apps = client.AppsV1Api(admin_api)

    def create(namespace: str, names: Sequence[str], replicas: int = 1) -> list[str]:
        for name in names:
            apps.create_namespaced_deployment(namespace, manifests.deployment(name, replicas))
        return list(names)

    return create


@pytest.fixture
def kube(admin_api: ApiClient) -> Kube:
    return Kube(admin_api)


# -- the server under fuzz (one for the module: hypothesis re-runs the test body, not the fixtures) -----


@pytest.fixture(scope="module")
def fuzz_namespace(admin_api: ApiClient) -> Iterator[str]:
    from kubernetes import client

    from scalekeeper_dev.testcluster import dns_label

    name = dns_label("fuzz", max_length=40)
    core, apps = client.CoreV1Api(admin_api), client.AppsV1Api(admin_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    apps.create_namespaced_deployment(name, manifests.deployment(TARGET, 1))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def fuzz_server(
    test_cluster: TestCluster, scalekeeper_crd: str, fuzz_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    pki_files = ServerPki.create(tmp_path_factory.mktemp("fuzz-pki"))
    with server_factory(test_cluster.admin_kubeconfig, pki_files, tmp_path_factory.mktemp("fuzz-log")) as start:
        process = start()
        yield process
        # The whole module's property, checked once at the end: no bug was logged, still ready.
        assert process.returncode is None, "the server crashed"
        assert readyz(process) == 200, "the server is no longer ready"
        # Hostile input is the client's fault: nothing of it may be logged as a server error.
        bugs = internal_errors_in_log(process)
        assert not bugs, bugs[:3]
