"""Writes the desired replica count: the Deployment's DeploymentScale.

SetReplicas stores intent, not the Deployment's replica count: the controller
applies it, reverts drift, and stands down when an HPA owns the count. All
writes use scalekeeper's own field manager, so a GitOps tool applying the same
object sees exactly whose field it is. Three cases:

- no expected version: server-side apply, forced (last write wins);
- an expected version: a merge patch carrying it as a precondition, which the
  apiserver refuses with 409 when stale and 404 when the object is gone, both
  ABORTED. (An apply would not do: it silently creates a missing object even
  with a resourceVersion set.)
- the expected version "": a create, which fails with 409 if the object exists.
"""

from __future__ import annotations

from scalekeeper.cache.projections import ScaleView
from scalekeeper.errors import Code, ServiceError
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES, FIELD_MANAGER

_APPLY = "application/apply-patch+yaml"
_MERGE_PATCH = "application/merge-patch+json"
# Forced: SetReplicas without an expected version is "last write wins" by design.
_APPLY_QUERY = {"fieldManager": FIELD_MANAGER, "force": True}


class DesiredStateWriter:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def write(self, namespace: str, name: str, replicas: int, expected_resource_version: str | None) -> ScaleView:
        """Store ``replicas`` as the desired count; return the stored DeploymentScale."""
        manifest = {
            "apiVersion": DEPLOYMENT_SCALES.api_version,
            "kind": DEPLOYMENT_SCALES.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        path = DEPLOYMENT_SCALES.path(namespace, name)
        try:
            if expected_resource_version is None:
                stored = await self._kube.request("PATCH", path, body=manifest, content_type=_APPLY, query=_APPLY_QUERY)
            elif expected_resource_version == "":
                stored = await self._kube.request(
                    "POST", DEPLOYMENT_SCALES.path(namespace), body=manifest, query={"fieldManager": FIELD_MANAGER}
                )
            else:
                precondition = {"metadata": {"resourceVersion": expected_resource_version}, "spec": manifest["spec"]}
                stored = await self._kube.request(
                    "PATCH", path, body=precondition, content_type=_MERGE_PATCH, query={"fieldManager": FIELD_MANAGER}
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
