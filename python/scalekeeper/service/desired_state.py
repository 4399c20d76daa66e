"""Writes the desired replica count: the Deployment's DeploymentScale.

SetReplicas stores intent, not the Deployment's replica count: the controller
applies it, reverts drift, and stands down when an HPA owns the count. The
write is a server-side apply under scalekeeper's own field manager, so a
GitOps tool applying the same object sees exactly whose field it is. With an
expected resourceVersion the apply carries it as a precondition, and the
apiserver refuses a stale one with 409, which becomes ABORTED.
"""

from __future__ import annotations

from scalekeeper.cache.projections import ScaleView
from scalekeeper.errors import Code, ServiceError
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES, FIELD_MANAGER

_APPLY = "application/apply-patch+yaml"


class DesiredStateWriter:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def write(self, namespace: str, name: str, replicas: int, expected_resource_version: str | None) -> ScaleView:
        """Store ``replicas`` as the desired count; return the stored DeploymentScale."""
        metadata: dict[str, str] = {"name": name, "namespace": namespace}
        manifest = {
            "apiVersion": DEPLOYMENT_SCALES.api_version,
            "kind": DEPLOYMENT_SCALES.kind,
            "metadata": metadata,
            "spec": {"replicas": replicas},
        }
        try:
            if expected_resource_version == "":
                # Create-only: succeeds only if nobody manages the Deployment yet.
                stored = await self._kube.request(
                    "POST",
                    DEPLOYMENT_SCALES.path(namespace),
                    body=manifest,
                    query={"fieldManager": FIELD_MANAGER},
                )
            else:
                if expected_resource_version is not None:
                    metadata["resourceVersion"] = expected_resource_version
                stored = await self._kube.request(
                    "PATCH",
                    DEPLOYMENT_SCALES.path(namespace, name),
                    body=manifest,
                    content_type=_APPLY,
                    query={"fieldManager": FIELD_MANAGER, "force": True},
                )
        except KubeApiError as error:
            raise _service_error(error, namespace, name, expected_resource_version) from error
        return ScaleView.from_object(stored)


def _service_error(error: KubeApiError, namespace: str, name: str, expected: str | None) -> ServiceError:
    target = f"DeploymentScale {namespace}/{name}"
    if error.is_conflict:
        if expected == "":
            return ServiceError(Code.ABORTED, f"{target} exists already; read its resource_version and retry with it")
        return ServiceError(
            Code.ABORTED,
            f"{target} changed since resource_version {expected!r}; read it again and retry with the new version",
        )
    if error.is_not_found and expected:
        return ServiceError(Code.ABORTED, f"{target} no longer exists; read it again and retry")
    if error.is_not_found:
        return ServiceError(
            Code.FAILED_PRECONDITION,
            "the DeploymentScale CRD (deploymentscales.scalekeeper.dev) is not installed in the cluster",
        )
    if error.status == 403:
        return ServiceError(
            Code.FAILED_PRECONDITION,
            f"scalekeeper's service account may not write DeploymentScales in namespace {namespace}; "
            "an operator must fix its RBAC",
        )
    if error.status == 422:
        return ServiceError(Code.INVALID_ARGUMENT, f"the cluster rejected the desired state: {error.message}")
    return ServiceError(Code.UNAVAILABLE, "the Kubernetes API is unavailable; retry with backoff")
