"""The API view of one Deployment (``Replicas``), from its cached Deployment and DeploymentScale."""

from __future__ import annotations

from scalekeeper.cache.projections import DeploymentView, ScaleView
from scalekeeper.service.versions import desired_version
from scalekeeper.v1 import replicas_pb2 as pb


def fill_replicas(replicas: pb.Replicas, deployment: DeploymentView, scale: ScaleView | None) -> pb.Replicas:
    """Write the API view of one Deployment into ``replicas`` (in place: no copy into a list reply)."""
    replicas.namespace = deployment.namespace
    replicas.name = deployment.name
    replicas.desired_replicas = scale.desired_replicas if scale else deployment.spec_replicas
    replicas.spec_replicas = deployment.spec_replicas
    replicas.ready_replicas = deployment.ready_replicas
    replicas.available_replicas = deployment.available_replicas
    replicas.managed = scale is not None
    replicas.desired_version = desired_version(scale)
    replicas.deployment_resource_version = deployment.resource_version
    condition = scale.condition("Ready") if scale else None
    if condition is not None:
        replicas.condition.status = condition.status
        replicas.condition.reason = condition.reason
        replicas.condition.message = condition.message
    return replicas


def to_replicas(deployment: DeploymentView, scale: ScaleView | None) -> pb.Replicas:
    return fill_replicas(pb.Replicas(), deployment, scale)
