"""Who owns spec.replicas, read from managedFields into the cache's views."""

from __future__ import annotations

from typing import Any

from scalekeeper.cache.projections import DeploymentView, ScaleView


def entry(manager: str, *, replicas: bool, subresource: str = "", operation: str = "Apply") -> dict[str, Any]:
    spec: dict[str, Any] = {"f:replicas": {}} if replicas else {"f:template": {}}
    managed: dict[str, Any] = {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": spec}}
    if subresource:
        managed["subresource"] = subresource
    return managed


def obj(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "web", "managedFields": list(entries)},
        "spec": {"replicas": 2},
    }


MANAGED = obj(
    entry("argocd-controller", replicas=True),
    entry("kubectl", replicas=True, subresource="scale", operation="Update"),
    entry("helm", replicas=False, operation="Update"),  # owns other fields only
    entry("scalekeeper", replicas=False, subresource="status", operation="Update"),
)


def test_a_deployment_names_every_owner_of_its_count_through_scale_or_not() -> None:
    assert DeploymentView.from_object(MANAGED).replicas_managers == ("argocd-controller", "kubectl")


def test_a_deploymentscale_names_only_who_declared_its_count_on_the_object() -> None:
    assert ScaleView.from_object(MANAGED).replicas_managers == ("argocd-controller",)


def test_no_managed_fields_means_no_owner() -> None:
    assert ScaleView.from_object(obj()).replicas_managers == ()
    bare = {"metadata": {"namespace": "ns", "name": "web"}, "spec": {}}
    assert DeploymentView.from_object(bare).replicas_managers == ()
