"""Small helpers shared by the reliability tests: readiness, metrics, polling with a deadline."""

from __future__ import annotations

from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families
from server_harness import ServerProcess

from scalekeeper.v1 import replicas_pb2 as pb

CRD_GROUP, CRD_VERSION, CRD_PLURAL = "scalekeeper.dev", "v1alpha1", "deploymentscales"

# gRPC codes a correct server may answer to a client's bad input; anything else
# (INTERNAL, UNKNOWN, and UNAVAILABLE while ready: scalekeeper's answer to a bug) is a failure.
CLIENT_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def readyz(server: ServerProcess) -> int:
    try:
        return server.health_get("/readyz", timeout=2.0)[0]
    except OSError:
        return 0


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    status, text = server.health_get("/metrics")
    assert status == 200, text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def get(stub: Any, namespace: str, name: str, timeout: float = 5.0) -> pb.Replicas:
    answer: pb.Replicas = stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=name), timeout=timeout)
    return answer


def internal_errors_in_log(server: ServerProcess) -> list[dict[str, Any]]:
    """Access-log records of calls answered as a server bug (INTERNAL/UNKNOWN, or 'internal error')."""
    bad = []
    for record in server.log_records():
        code = str(record.get("code", ""))
        bug_answer = code in {"INTERNAL", "UNKNOWN"} or "internal error" in str(record.get("msg", "")).lower()
        if bug_answer or record.get("level") in {"error", "critical"}:
            bad.append(record)
    return bad


class Kube:
    """The admin's direct view and actions, bypassing scalekeeper."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def spec_replicas(self, namespace: str, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, namespace).spec.replicas)

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})

    def scale_object(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            CRD_GROUP, CRD_VERSION, namespace, CRD_PLURAL, name
        )
        return obj

    def set_desired(self, namespace: str, name: str, replicas: int) -> None:
        """Change a DeploymentScale's spec.replicas directly (merge patch)."""
        self.custom.patch_namespaced_custom_object(
            CRD_GROUP, CRD_VERSION, namespace, CRD_PLURAL, name, {"spec": {"replicas": replicas}}
        )
