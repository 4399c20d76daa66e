"""Without the DeploymentScale CRD: reads work, writes say which CRD to install, and installing it needs no restart.

A missing CRD is a state of the cluster, not a failure of the cache: no
DeploymentScale exists, so every Deployment is truthfully unmanaged, and
readiness stays up (pulling every replica out of its Service would turn an
operator's omission into an outage of reads). SetReplicas cannot succeed until
an operator installs the CRD, so it is FAILED_PRECONDITION naming it, not
UNAVAILABLE "retry".

The CRD is cluster-wide, so the test re-installs it whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from server_harness import ServerProcess, StartServer, eventually

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper_dev.crd import install_crd

CRD = "deploymentscales.scalekeeper.dev"


@pytest.fixture
def crd_deleted(admin_api: client.ApiClient, scalekeeper_crd: str) -> Iterator[Callable[[], None]]:
    """A function that deletes the CRD and waits until it is gone; the CRD is back after the test."""
    extensions = client.ApiextensionsV1Api(admin_api)

    def gone() -> bool:
        try:
            extensions.read_custom_resource_definition(CRD)
        except ApiException as error:
            return error.status == 404
        return False

    def delete() -> None:
        extensions.delete_custom_resource_definition(CRD)
        eventually(gone, "the CRD to be deleted", timeout=60)

    try:
        yield delete
    finally:
        install_crd(admin_api)


def _get(server: ServerProcess, namespace: str) -> pb.Replicas:
    return server.stub("reader").GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="web"), timeout=10)


def _assert_reads_work_and_writes_name_the_crd(server: ServerProcess, namespace: str) -> None:
    replicas = eventually(lambda: (r := _get(server, namespace)).desired_version == "" and r, "Get to answer unmanaged")
    assert (replicas.managed, replicas.desired_replicas) == (False, 3)
    listed = server.stub("reader").ListDeployments(pb.ListDeploymentsRequest(namespace=namespace), timeout=10)
    assert [d.name for d in listed.deployments] == ["web"]
    assert server.health_get("/readyz")[0] == 200

    request = pb.SetReplicasRequest(namespace=namespace, name="web", replicas=5)
    with pytest.raises(grpc.RpcError) as caught:
        server.stub("writer").SetReplicas(request, timeout=10)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert CRD in caught.value.details()
    result = server.http("writer").put(f"/v1/namespaces/{namespace}/deployments/web/replicas", {"replicas": 5})
    assert (result.status, result.body["code"]) == (400, "FAILED_PRECONDITION")
    assert not [r for r in server.log_records() if r.get("level") == "error"]


def test_without_the_crd_reads_work_and_writes_fail_naming_it(
    start_server: StartServer,
    crd_deleted: Callable[[], None],
    admin_api: client.ApiClient,
    namespace: str,
    deployments: Callable[..., list[str]],
) -> None:
    deployments(namespace, ["web"], replicas=3)
    running = start_server()
    writer = running.stub("writer")
    eventually(lambda: _get(running, namespace), "web in the cache")
    writer.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="web", replicas=3), timeout=10)
    assert _get(running, namespace).managed

    crd_deleted()
    # A server that saw the CRD go, and one that starts without it.
    _assert_reads_work_and_writes_name_the_crd(running, namespace)
    starting = start_server()
    _assert_reads_work_and_writes_name_the_crd(starting, namespace)

    install_crd(admin_api)
    request = pb.SetReplicasRequest(namespace=namespace, name="web", replicas=4)
    for server in (running, starting):
        answer = eventually(lambda s=server: s.stub("writer").SetReplicas(request, timeout=10), "SetReplicas to work")
        assert answer.managed
        eventually(lambda s=server: _get(s, namespace).managed, "the new DeploymentScale in the cache")
