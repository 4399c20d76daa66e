"""The status the controller writes: only when it changes, with honest transition times."""

from __future__ import annotations

import datetime

from scalekeeper.cache.projections import ConditionView, ScaleView
from scalekeeper.controller.status import (
    READY,
    Observed,
    Reason,
    status_patch,
    timestamp,
    was_in_sync,
)

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:05:00Z"


def scale(
    *,
    generation: int = 2,
    desired: int = 3,
    observed_generation: int = 2,
    replicas: int = 3,
    ready_replicas: int = 0,
    conditions: tuple[ConditionView, ...] = (),
) -> ScaleView:
    return ScaleView(
        namespace="ns",
        name="web",
        uid="d6a4c1e0-0000-4000-8000-000000000001",
        resource_version="42",
        generation=generation,
        desired_replicas=desired,
        observed_generation=observed_generation,
        status_replicas=replicas,
        status_ready_replicas=ready_replicas,
        conditions=conditions,
    )


def ready(
    status: str = "True", reason: str = Reason.SCALED, message: str = "Deployment spec.replicas is 3"
) -> ConditionView:
    return ConditionView(READY, status, reason, message, T0)


SCALED = Observed(2, 3, 0, True, Reason.SCALED, "Deployment spec.replicas is 3")


def test_no_patch_when_nothing_changed() -> None:
    assert status_patch(scale(conditions=(ready(),)), SCALED, T1) is None


def test_first_status_sets_everything_with_a_precondition() -> None:
    patch = status_patch(scale(observed_generation=0, replicas=0), SCALED, T1)
    assert patch == {
        "metadata": {"resourceVersion": "42"},
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "readyReplicas": 0,
            "conditions": [
                {
                    "type": READY,
                    "status": "True",
                    "reason": Reason.SCALED,
                    "message": "Deployment spec.replicas is 3",
                    "lastTransitionTime": T1,
                }
            ],
        },
    }


def test_ready_replicas_change_is_written_but_transition_time_kept() -> None:
    observed = Observed(2, 3, 2, True, Reason.SCALED, "Deployment spec.replicas is 3")
    patch = status_patch(scale(conditions=(ready(),)), observed, T1)
    assert patch is not None
    assert patch["status"]["readyReplicas"] == 2
    assert patch["status"]["conditions"][0]["lastTransitionTime"] == T0


def test_reason_change_without_status_flip_keeps_transition_time() -> None:
    current = scale(conditions=(ready("False", Reason.DEPLOYMENT_NOT_FOUND, "gone"),))
    observed = Observed(2, 3, 0, False, Reason.CONFLICT_WITH_HPA, "hpa")
    patch = status_patch(current, observed, T1)
    assert patch is not None
    condition = patch["status"]["conditions"][0]
    assert (condition["reason"], condition["lastTransitionTime"]) == (Reason.CONFLICT_WITH_HPA, T0)


def test_status_flip_moves_transition_time() -> None:
    current = scale(conditions=(ready("False", Reason.DEPLOYMENT_NOT_FOUND, "gone"),))
    patch = status_patch(current, SCALED, T1)
    assert patch is not None
    assert patch["status"]["conditions"][0]["lastTransitionTime"] == T1


def test_other_condition_types_are_preserved() -> None:
    other = ConditionView("Audited", "True", "Checked", "by someone else", T0)
    patch = status_patch(scale(observed_generation=1, conditions=(other, ready())), SCALED, T1)
    assert patch is not None
    types = [c["type"] for c in patch["status"]["conditions"]]
    assert types == [READY, "Audited"]
    assert patch["status"]["conditions"][1]["message"] == "by someone else"


def test_new_generation_alone_is_a_change() -> None:
    patch = status_patch(scale(generation=3, observed_generation=2, conditions=(ready(),)), SCALED, T1)
    assert patch is None  # Observed says generation 2: the same
    observed = Observed(3, 3, 0, True, Reason.SCALED, "Deployment spec.replicas is 3")
    patch = status_patch(scale(generation=3, observed_generation=2, conditions=(ready(),)), observed, T1)
    assert patch is not None
    assert patch["status"]["observedGeneration"] == 3


def test_drift_only_after_this_generation_was_applied() -> None:
    assert was_in_sync(scale(conditions=(ready(),)))
    # A new desired count (generation not observed yet): not drift.
    assert not was_in_sync(scale(generation=3, desired=5, conditions=(ready(),)))
    # Never applied (HPA conflict, missing Deployment): not drift.
    assert not was_in_sync(scale(conditions=(ready("False", Reason.CONFLICT_WITH_HPA),)))
    assert not was_in_sync(scale(conditions=()))
    # Status records another count than desired: not a proven in-sync state.
    assert not was_in_sync(scale(replicas=2, conditions=(ready(),)))


def test_timestamp_is_rfc3339_utc() -> None:
    moment = datetime.datetime(2025, 3, 4, 5, 6, 7, 890, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert timestamp(moment) == "2025-03-04T03:06:07Z"
