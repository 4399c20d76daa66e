"""Writes the desired replica count: the Deployment's DeploymentScale.

SetReplicas stores intent, not the Deployment's replica count: the controller
applies it, reverts drift, and stands down when an HPA owns the count. All
writes use scalekeeper's own field manager, so a GitOps tool applying the same
object sees exactly whose field it is.

Git wins by default: when another field manager declared ``spec.replicas``
(``ScaleView.replicas_managers``: a GitOps tool, kubectl apply, Helm), the
write is refused with FAILED_PRECONDITION naming it, since that manager's next
sync would revert it. ``take_ownership`` overrides this deliberately.

Three cases, by the expected version (``versions.DesiredVersion``):

- none: server-side apply, last write wins among imperative writers. It is
  sent unforced first, so the apiserver itself detects another manager's
  ownership (a 409 conflict, atomic with the write); only then is the object
  read to tell a declared owner (refused) from a ``/scale`` writer such as
  ``kubectl scale dscale`` (forced over);
- ``NOT_MANAGED`` (""): a create, which fails with 409 if the object exists;
- a version: a conditional write. The version names a state of the spec
  (uid, generation), but the apiserver can only compare resourceVersions, so
  the write reads the object, checks its (uid, generation) against the
  expected version, and sends a merge patch preconditioned on the
  resourceVersion it read. etcd's compare-and-swap then guarantees that the
  object written is the one checked. A 409 means the object changed in
  between; it is read again, and only a changed (uid, generation) is ABORTED:
  a status write or a metadata edit in between is not the caller's conflict.
  The object checked for a declared owner is that same object, so the
  refusal cannot race either. (An apply would not do for the write: it silently creates a missing object
  even with a resourceVersion set.)
"""

from __future__ import annotations

from scalekeeper.cache.projections import ScaleView
from scalekeeper.errors import Code, ServiceError
from scalekeeper.kube.client import JSON, KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES
from scalekeeper.service.versions import NOT_MANAGED, DesiredVersion

_APPLY = "application/apply-patch+yaml"
_MERGE_PATCH = "application/merge-patch+json"
# KubeClient names scalekeeper's field manager on every write.
_FORCED = {"force": True}
# Read-check-write rounds before giving up on an object whose status keeps changing
# under the write. The controller writes status only when something visible
# changed, so more than one retry is already rare.
MAX_CONDITIONAL_ATTEMPTS = 5


class DesiredStateWriter:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def write(
        self,
        namespace: str,
        name: str,
        replicas: int,
        expected: DesiredVersion | None,
        cached: ScaleView | None = None,
        *,
        take_ownership: bool = False,
    ) -> ScaleView:
        """Store ``replicas`` as the desired count; return the stored DeploymentScale.

        ``cached`` is the cache's view of the object, if any: when it is at the
        expected version, the first conditional attempt skips the read.
        ``take_ownership`` overrides another manager's ownership of spec.replicas.
        """
        manifest = {
            "apiVersion": DEPLOYMENT_SCALES.api_version,
            "kind": DEPLOYMENT_SCALES.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        try:
            if expected is None:
                stored = await self._apply(manifest, take_ownership)
            elif expected == NOT_MANAGED:
                stored = await self._kube.request("POST", DEPLOYMENT_SCALES.path(namespace), body=manifest)
            else:
                return await self._write_if_unchanged(
                    namespace, name, replicas, expected, cached, take_ownership=take_ownership
                )
        except KubeApiError as error:
            raise _service_error(error, namespace, name, expected) from error
        return ScaleView.from_object(stored)

    async def _apply(self, manifest: JSON, take_ownership: bool) -> JSON:
        metadata = manifest["metadata"]
        path = DEPLOYMENT_SCALES.path(metadata["namespace"], metadata["name"])
        if not take_ownership:
            try:
                return await self._kube.request("PATCH", path, body=manifest, content_type=_APPLY)
            except KubeApiError as error:
                if not error.is_conflict:
                    raise
            # Another manager owns spec.replicas. Which kind (the conflict's text is no API)?
            try:
                current = ScaleView.from_object(await self._kube.request("GET", path))
            except KubeApiError as error:
                if not error.is_not_found:
                    raise
            else:
                self._refuse_declared_owners(current)
        return await self._kube.request("PATCH", path, body=manifest, content_type=_APPLY, query=_FORCED)

    def _refuse_declared_owners(self, current: ScaleView) -> None:
        owners = ", ".join(repr(m) for m in current.replicas_managers if m != self._kube.field_manager)
        if owners:
            raise ServiceError(
                Code.FAILED_PRECONDITION,
                f"spec.replicas of DeploymentScale {current.namespace}/{current.name} is managed by {owners}, "
                "which declared it (a GitOps tool applying it from git, kubectl apply, Helm) and would set it "
                "back: change the count where it is declared (in git), or set take_ownership to take it over",
            )

    async def _write_if_unchanged(
        self,
        namespace: str,
        name: str,
        replicas: int,
        expected: DesiredVersion,
        cached: ScaleView | None,
        *,
        take_ownership: bool,
    ) -> ScaleView:
        path = DEPLOYMENT_SCALES.path(namespace, name)
        current = cached if cached is not None and DesiredVersion.of(cached) == expected else None
        for _ in range(MAX_CONDITIONAL_ATTEMPTS):
            try:
                if current is None:
                    current = ScaleView.from_object(await self._kube.request("GET", path))
                    if DesiredVersion.of(current) != expected:
                        raise ServiceError(Code.ABORTED, _changed(namespace, name, expected))
                if not take_ownership and replicas != current.desired_replicas:
                    # Checked on the very object the patch is preconditioned on: no race. (An
                    # unchanged count is no write at all, as an unforced apply of it is none.)
                    self._refuse_declared_owners(current)
                patch = {"metadata": {"resourceVersion": current.resource_version}, "spec": {"replicas": replicas}}
                stored = await self._kube.request("PATCH", path, body=patch, content_type=_MERGE_PATCH)
            except KubeApiError as error:
                if not error.is_conflict:
                    raise _service_error(error, namespace, name, expected) from error
                current = None  # changed since read: read again, and compare versions
            else:
                return ScaleView.from_object(stored)
        raise ServiceError(
            Code.UNAVAILABLE,
            f"DeploymentScale {namespace}/{name} kept changing while being written; retry shortly",
        )


def _changed(namespace: str, name: str, expected: DesiredVersion) -> str:
    return (
        f"the desired replicas of {namespace}/{name} changed since version {str(expected)!r}; "
        "read them again and retry with the new desired_version"
    )


def _service_error(error: KubeApiError, namespace: str, name: str, expected: DesiredVersion | None) -> ServiceError:
    target = f"DeploymentScale {namespace}/{name}"
    if error.is_conflict:
        if expected == NOT_MANAGED:
            return ServiceError(Code.ABORTED, f"{target} exists already; read its desired_version and retry with it")
        return ServiceError(Code.ABORTED, f"{target} changed concurrently; read it again and retry")
    if error.is_not_found and expected is not None and expected != NOT_MANAGED:
        return ServiceError(Code.ABORTED, f"{target} does not exist (any more); read it again and retry")
    if error.is_not_found:
        return ServiceError(Code.FAILED_PRECONDITION, CRD_MISSING)
    if error.status == 403:
        return ServiceError(
            Code.FAILED_PRECONDITION,
            f"scalekeeper's service account may not write DeploymentScales in namespace {namespace}; "
            "an operator must fix its RBAC",
        )
    if error.status == 422:
        return ServiceError(Code.INVALID_ARGUMENT, f"the cluster rejected the desired state: {error.message}")
    return ServiceError(Code.UNAVAILABLE, "the Kubernetes API is unavailable; retry with backoff")


CRD_MISSING = (
    "the DeploymentScale CRD (deploymentscales.scalekeeper.dev) is not installed in the cluster; "
    "an operator must install it (helm upgrade, or kubectl apply -f the chart's files/crds) before replicas can be set"
)
