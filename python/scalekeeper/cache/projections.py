"""Compact, immutable views of the Kubernetes objects the cache keeps.

The cache holds tens of thousands of objects, so it stores only the fields
scalekeeper reads, projected straight from the apiserver's JSON, rather than
full client models (which cost kilobytes each and are slow to build).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TypeAlias

Key: TypeAlias = tuple[str, str]  # (namespace, name)
RawObject: TypeAlias = dict[str, Any]


def key_of(obj: RawObject) -> Key:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


def replicas_managers(metadata: RawObject, *, subresources: bool) -> tuple[str, ...]:
    """The field managers that own ``spec.replicas`` according to managedFields, sorted.

    ``subresources`` False leaves out writes made through a subresource (e.g.
    ``kubectl scale`` through ``/scale``), which are imperative, not someone's
    declared state.
    """
    # Interned: thousands of views share a handful of manager names.
    owners = {
        sys.intern(entry.get("manager", ""))
        for entry in metadata.get("managedFields") or ()
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        and (subresources or not entry.get("subresource"))
    }
    return tuple(sorted(owners))


@dataclass(frozen=True, slots=True)
class DeploymentView:
    namespace: str
    name: str
    resource_version: str
    spec_replicas: int
    ready_replicas: int
    available_replicas: int
    # Who last set spec.replicas, through /scale or not: how the controller names the other side of a fight.
    replicas_managers: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @classmethod
    def from_object(cls, obj: RawObject) -> DeploymentView:
        metadata, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            resource_version=metadata.get("resourceVersion", ""),
            # The apiserver defaults spec.replicas to 1, so it is always set on stored objects.
            spec_replicas=int(spec.get("replicas", 1)),
            ready_replicas=int(status.get("readyReplicas", 0)),
            available_replicas=int(status.get("availableReplicas", 0)),
            replicas_managers=replicas_managers(metadata, subresources=True),
        )


@dataclass(frozen=True, slots=True)
class ConditionView:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str


@dataclass(frozen=True, slots=True)
class ScaleView:
    """A DeploymentScale: the desired replica count of the Deployment of the same name."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    desired_replicas: int
    observed_generation: int
    status_replicas: int
    status_ready_replicas: int
    conditions: tuple[ConditionView, ...]
    # Who declared spec.replicas on the object itself (an applier such as a GitOps
    # tool, or an editor); writes through /scale are left out. SetReplicas refuses
    # to override them unless told to take over.
    replicas_managers: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    def condition(self, condition_type: str = "Ready") -> ConditionView | None:
        return next((c for c in self.conditions if c.type == condition_type), None)

    @classmethod
    def from_object(cls, obj: RawObject) -> ScaleView:
        metadata, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=metadata.get("uid", ""),
            resource_version=metadata.get("resourceVersion", ""),
            generation=int(metadata.get("generation", 0)),
            desired_replicas=int(spec.get("replicas", 0)),
            observed_generation=int(status.get("observedGeneration", 0)),
            status_replicas=int(status.get("replicas", 0)),
            status_ready_replicas=int(status.get("readyReplicas", 0)),
            conditions=tuple(
                ConditionView(
                    type=c.get("type", ""),
                    status=c.get("status", "Unknown"),
                    reason=c.get("reason", ""),
                    message=c.get("message", ""),
                    last_transition_time=c.get("lastTransitionTime", ""),
                )
                for c in status.get("conditions") or ()
            ),
            replicas_managers=replicas_managers(metadata, subresources=False),
        )


@dataclass(frozen=True, slots=True)
class HpaView:
    """A HorizontalPodAutoscaler, reduced to the Deployment it scales (if any)."""

    namespace: str
    name: str
    resource_version: str
    target_deployment: str | None

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @classmethod
    def from_object(cls, obj: RawObject) -> HpaView:
        metadata = obj["metadata"]
        target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        targets_deployment = target.get("kind") == "Deployment" and target.get("apiVersion", "").startswith("apps/")
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            resource_version=metadata.get("resourceVersion", ""),
            target_deployment=target.get("name") if targets_deployment else None,
        )
