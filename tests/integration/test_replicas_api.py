"""The replica API's semantics end to end: reads from the cache only, desired state, conflicts.

A real server (with its controller) against the real apiserver; these are the
behaviours the design promises callers, rather than the transports' mechanics.
"""

from __future__ import annotations

import secrets
import threading

import grpc
import pytest
from kubernetes import client, config
from server_harness import ServerProcess, StartServer, deployment_manifest, eventually

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper_dev.bench_env import APISERVER_RESOURCES, parse_metrics
from scalekeeper_dev.controlplane import ControlPlane


@pytest.fixture
def server_with_controller(start_server: StartServer) -> ServerProcess:
    return start_server("--controller", f"--lease-name=t-{secrets.token_hex(4)}", "--leader-election-namespace=default")


def _object_reads(plane: ControlPlane) -> dict[tuple[str, str], float]:
    """GETs and LISTs of the resources scalekeeper reads, by (resource, verb).

    A read RPC served by the apiserver would be one of these. Left out: watches,
    which the cluster's controllers re-open on their own schedule, and
    subresources, e.g. the HPA controller's periodic GET of /scale.
    """
    status, body = plane.request("GET", "/metrics", timeout=30.0)
    assert status == 200, body
    totals: dict[tuple[str, str], float] = {}
    for (name, label_items), value in parse_metrics(body["text"]).items():
        labels = dict(label_items)
        if (
            name == "apiserver_request_total"
            and labels.get("resource") in APISERVER_RESOURCES
            and labels.get("verb") in ("GET", "LIST")
            and not labels.get("subresource")
        ):
            key = (labels["resource"], labels["verb"])
            totals[key] = totals.get(key, 0.0) + value
    return totals


def scale_of(admin_api: client.ApiClient, namespace: str, name: str) -> int:
    return client.AppsV1Api(admin_api).read_namespaced_deployment_scale(name, namespace).spec.replicas


def test_a_thousand_read_rpcs_cause_no_apiserver_request(start_server: StartServer, apiserver_only: ControlPlane):
    # On an apiserver of its own, the request counts are this server's alone.
    namespace = "reads"
    admin = config.new_client_from_config(config_file=str(apiserver_only.kubeconfig))
    try:
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
        for i in range(5):
            client.AppsV1Api(admin).create_namespaced_deployment(namespace, deployment_manifest(f"d{i}", 1))
    finally:
        admin.close()
    server = start_server(
        "--watch-timeout-seconds=600", "--watch-read-timeout-seconds=700", kubeconfig=apiserver_only.kubeconfig
    )
    stub = server.stub("reader")
    get = pb.GetReplicasRequest(namespace=namespace, name="d0")
    eventually(lambda: stub.GetReplicas(get), "the Deployments in the server's cache")

    before = _object_reads(apiserver_only)
    for i in range(1000):
        if i % 2:
            assert stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=f"d{i % 5}")).name == f"d{i % 5}"
        else:
            first = stub.ListDeployments(pb.ListDeploymentsRequest(namespace=namespace, page_size=3))
            rest = stub.ListDeployments(
                pb.ListDeploymentsRequest(namespace=namespace, page_size=3, page_token=first.next_page_token)
            )
            assert len(first.deployments) + len(rest.deployments) == 5
    after = _object_reads(apiserver_only)

    changed = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
    assert changed == {}, f"read RPCs reached the apiserver: {changed}"


def test_set_replicas_stores_desired_state_and_the_controller_applies_it(
    server_with_controller: ServerProcess, admin_api: client.ApiClient, namespace: str, deployments
):
    deployments(namespace, ["web"], replicas=1)
    stub = server_with_controller.stub("writer")
    eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="web")), "web in the cache")

    answer = stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="web", replicas=4))
    assert answer.desired_replicas == 4
    assert answer.managed
    assert answer.desired_version

    eventually(lambda: scale_of(admin_api, namespace, "web") == 4, "the Deployment scaled to 4")

    def reported() -> pb.Replicas | None:
        replicas = stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="web"))
        return replicas if replicas.spec_replicas == 4 and replicas.condition.reason == "Scaled" else None

    replicas = eventually(reported, "Get to report the applied count and the Scaled condition")
    assert replicas.condition.status == "True"
    assert replicas.desired_replicas == 4


def test_set_replicas_refuses_a_deployment_an_hpa_scales(
    server_with_controller: ServerProcess, admin_api: client.ApiClient, namespace: str, deployments
):
    deployments(namespace, ["api"], replicas=2)
    client.AutoscalingV2Api(admin_api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "api-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": 1,
                "maxReplicas": 5,
            },
        },
    )
    stub = server_with_controller.stub("writer")
    request = pb.SetReplicasRequest(namespace=namespace, name="api", replicas=3)

    def refused() -> grpc.RpcError | None:
        try:
            stub.SetReplicas(request)
        except grpc.RpcError as error:
            return error if error.code() is grpc.StatusCode.FAILED_PRECONDITION else None
        pytest.fail("SetReplicas succeeded although an HPA scales the Deployment")

    error = eventually(refused, "FAILED_PRECONDITION once the HPA is in the cache")
    assert "api-hpa" in error.details()
    custom = client.CustomObjectsApi(admin_api)
    scales = custom.list_namespaced_custom_object("scalekeeper.dev", "v1alpha1", namespace, "deploymentscales")
    assert scales["items"] == []
    assert scale_of(admin_api, namespace, "api") == 2


def test_concurrent_writers_with_the_same_expected_version_one_wins(
    scalekeeper_server: ServerProcess, namespace: str, deployments
):
    deployments(namespace, ["shop"])
    stub = scalekeeper_server.stub("writer")
    eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="shop")), "shop in the cache")
    version = stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="shop", replicas=1)).desired_version

    outcomes: list[grpc.StatusCode] = []
    barrier = threading.Barrier(2)

    def write(replicas: int) -> None:
        request = pb.SetReplicasRequest(
            namespace=namespace, name="shop", replicas=replicas, expected_desired_version=version
        )
        barrier.wait()
        try:
            stub.SetReplicas(request)
            outcomes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            outcomes.append(error.code())

    writers = [threading.Thread(target=write, args=(n,)) for n in (2, 3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=30)
    assert sorted(outcomes, key=str) == sorted([grpc.StatusCode.OK, grpc.StatusCode.ABORTED], key=str)


def test_expected_version_semantics_create_only_and_vanished(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, deployments
):
    deployments(namespace, ["cart"])
    stub = scalekeeper_server.stub("writer")
    eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="cart")), "cart in the cache")

    create_only = pb.SetReplicasRequest(namespace=namespace, name="cart", replicas=2, expected_desired_version="")
    created = stub.SetReplicas(create_only)
    assert created.managed
    assert created.desired_version, created
    with pytest.raises(grpc.RpcError) as again:
        stub.SetReplicas(create_only)
    assert again.value.code() is grpc.StatusCode.ABORTED

    client.CustomObjectsApi(admin_api).delete_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", "cart"
    )
    stale = pb.SetReplicasRequest(
        namespace=namespace, name="cart", replicas=3, expected_desired_version=created.desired_version
    )
    with pytest.raises(grpc.RpcError) as vanished:
        stub.SetReplicas(stale)
    assert vanished.value.code() is grpc.StatusCode.ABORTED


def test_conditional_writes_chain_across_the_controllers_status_writes(
    server_with_controller: ServerProcess, admin_api: client.ApiClient, namespace: str, deployments
):
    deployments(namespace, ["chain"], replicas=1)
    stub = server_with_controller.stub("writer")
    custom = client.CustomObjectsApi(admin_api)

    def stored() -> dict:
        return custom.get_namespaced_custom_object(
            "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", "chain"
        )

    def set_to(replicas: int, expected: str) -> pb.Replicas:
        request = pb.SetReplicasRequest(
            namespace=namespace, name="chain", replicas=replicas, expected_desired_version=expected
        )
        return stub.SetReplicas(request, timeout=10)

    unmanaged = eventually(lambda: stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="chain")), "chain")
    assert unmanaged.desired_version == ""
    first = set_to(2, unmanaged.desired_version)
    # The controller's status write lands after the Set: the object's resourceVersion moves on...
    written_at = stored()["metadata"]["resourceVersion"]
    eventually(
        lambda: stored().get("status", {}).get("observedGeneration") == stored()["metadata"]["generation"], "status"
    )
    assert stored()["metadata"]["resourceVersion"] != written_at
    # ...but the version the caller holds does not: Get -> Set -> Set chains without a spurious ABORTED.
    second = set_to(3, first.desired_version)
    third = set_to(4, second.desired_version)
    assert (third.desired_replicas, stored()["spec"]["replicas"]) == (4, 4)
    assert set_to(4, third.desired_version).desired_version == third.desired_version  # same count: nothing moves

    # A metadata edit is not a change of the desired count either.
    custom.patch_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", "chain", {"metadata": {"labels": {"a": "b"}}}
    )
    fourth = set_to(5, third.desired_version)

    def refused(expected: str) -> str:
        with pytest.raises(grpc.RpcError) as caught:
            set_to(9, expected)
        assert caught.value.code() is grpc.StatusCode.ABORTED, caught.value
        return caught.value.details()

    # What does invalidate it: someone else's Set, an edit of spec, delete and re-create.
    assert "changed since" in refused(second.desired_version)
    custom.patch_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", "chain", {"spec": {"replicas": 6}}
    )
    refused(fourth.desired_version)
    current = eventually(
        lambda: (
            (r := stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="chain"))).desired_replicas == 6
            and r
        ),
        "the spec edit in the cache",
    )
    custom.delete_namespaced_custom_object("scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", "chain")
    refused(current.desired_version)
    custom.create_namespaced_custom_object(
        "scalekeeper.dev",
        "v1alpha1",
        namespace,
        "deploymentscales",
        {
            "apiVersion": "scalekeeper.dev/v1alpha1",
            "kind": "DeploymentScale",
            "metadata": {"name": "chain"},
            "spec": {"replicas": 6},
        },
    )
    refused(current.desired_version)  # same generation, same count, but another object
    assert stored()["spec"]["replicas"] == 6
