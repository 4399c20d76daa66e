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

from reliability_helpers import Kube  # noqa: E402
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
