"""The Kubernetes resources scalekeeper reads and writes, and how to address them."""

from __future__ import annotations

from dataclasses import dataclass

FIELD_MANAGER = "scalekeeper"
CRD_GROUP = "scalekeeper.dev"
CRD_VERSION = "v1alpha1"


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        """The REST path: the collection (in all namespaces when ``namespace`` is empty) or one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
DEPLOYMENT_SCALES = Resource(CRD_GROUP, CRD_VERSION, "deploymentscales", "DeploymentScale")
HORIZONTAL_POD_AUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
EVENTS = Resource("events.k8s.io", "v1", "events", "Event")
