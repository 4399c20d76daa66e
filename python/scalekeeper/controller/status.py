"""The status a DeploymentScale should show, and the patch (if any) that gets it there.

Kept pure (views in, dict out) so the rules that matter most for a quiet
controller are unit-tested without a cluster: a status write happens only when
something a reader can see changed, and a condition's ``lastTransitionTime``
moves only when its ``status`` flips (a new reason or message is not a
transition, as in ``meta.SetStatusCondition``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from scalekeeper.cache.projections import ConditionView, ScaleView

READY = "Ready"


class Reason:
    """Reasons of the Ready condition (CamelCase, as the API conventions ask)."""

    SCALED = "Scaled"  # True: the Deployment's spec.replicas is the desired count
    DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
    CONFLICT_WITH_HPA = "ConflictWithHPA"  # an HPA owns the count; scalekeeper keeps its hands off
    SCALE_FAILED = "ScaleFailed"  # the apiserver refused the write (other than a conflict)
    # Another field manager (e.g. a GitOps tool) keeps setting the count back; reverts are backed off.
    CONFLICT_WITH_FIELD_MANAGER = "ConflictWithFieldManager"


@dataclass(frozen=True)
class Observed:
    """What one sync found out, i.e. the status the DeploymentScale should carry."""

    observed_generation: int
    replicas: int
    ready_replicas: int
    ready: bool
    reason: str
    message: str


def timestamp(now: datetime.datetime | None = None) -> str:
    """An RFC 3339 ``metav1.Time`` (second precision, UTC)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition_json(condition: ConditionView) -> dict[str, Any]:
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": condition.last_transition_time,
    }


def ready_condition(previous: ConditionView | None, observed: Observed, now: str) -> ConditionView:
    status = "True" if observed.ready else "False"
    keeps_time = previous is not None and previous.status == status and previous.last_transition_time
    return ConditionView(
        type=READY,
        status=status,
        reason=observed.reason,
        message=observed.message,
        last_transition_time=previous.last_transition_time if keeps_time and previous else now,
    )


def status_patch(scale: ScaleView, observed: Observed, now: str) -> dict[str, Any] | None:
    """A JSON merge patch for the status subresource, or None when the status is already right.

    The patch carries the cached ``resourceVersion`` as a precondition: a status
    computed from a stale view must fail with 409 (and be recomputed) rather
    than overwrite a newer one, e.g. a previous leader's during a failover.
    The whole ``conditions`` list is sent (merge patch replaces lists), keeping
    conditions of other types untouched.
    """
    previous = scale.condition(READY)
    ready = ready_condition(previous, observed, now)
    unchanged = (
        scale.observed_generation == observed.observed_generation
        and scale.status_replicas == observed.replicas
        and scale.status_ready_replicas == observed.ready_replicas
        and previous is not None
        and (previous.status, previous.reason, previous.message) == (ready.status, ready.reason, ready.message)
    )
    if unchanged:
        return None
    conditions = [_condition_json(c) for c in scale.conditions if c.type != READY]
    conditions.insert(0, _condition_json(ready))
    return {
        "metadata": {"resourceVersion": scale.resource_version},
        "status": {
            "observedGeneration": observed.observed_generation,
            "replicas": observed.replicas,
            "readyReplicas": observed.ready_replicas,
            "conditions": conditions,
        },
    }


def was_in_sync(scale: ScaleView) -> bool:
    """Whether the status says this generation's count had been applied.

    A mismatch found after that is drift (someone changed the Deployment);
    a mismatch before it is a new desired count still being rolled out.
    """
    ready = scale.condition(READY)
    return (
        scale.observed_generation == scale.generation
        and ready is not None
        and ready.status == "True"
        and ready.reason == Reason.SCALED
        and scale.status_replicas == scale.desired_replicas
    )
