"""When reverts add up to a fight, how the reverts slow down, and when the fight is over."""

from __future__ import annotations

import pytest

from scalekeeper.controller.fights import FightPolicy, FightTracker

POLICY = FightPolicy(threshold=3, window=60.0, base_delay=5.0, max_delay=40.0)
KEY = ("ns", "web")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker() -> tuple[FightTracker[tuple[str, str]], Clock]:
    clock = Clock()
    return FightTracker(POLICY, clock), clock


def test_the_threshold_th_revert_against_one_manager_starts_the_fight_once() -> None:
    fights, clock = tracker()
    assert [fights.reverted(KEY, "argocd-controller") for _ in range(2)] == [False, False]
    assert fights.fight(KEY) is None
    assert fights.delay_before_revert(KEY, "argocd-controller") == 0.0
    clock.now += 59
    assert fights.reverted(KEY, "argocd-controller") is True
    streak = fights.fight(KEY)
    assert streak is not None
    assert (streak.manager, streak.reverts) == ("argocd-controller", 3)
    clock.now += 100  # the backoff is waited out: a fourth revert continues, it does not start anything
    assert fights.reverted(KEY, "argocd-controller") is False


def test_reverts_spread_wider_than_the_window_or_by_different_managers_are_no_fight() -> None:
    fights, clock = tracker()
    for _ in range(5):
        fights.reverted(KEY, "kubectl")
        clock.now += 61
    assert fights.fight(KEY) is None
    for manager in ("kubectl", "kubectl", "kustomize-controller", "kubectl", "kubectl"):
        fights.reverted(KEY, manager)
    assert fights.fight(KEY) is None
    assert fights.fight(("ns", "other")) is None


def test_reverts_in_a_fight_wait_a_doubling_delay_capped_at_the_maximum() -> None:
    fights, clock = tracker()
    for _ in range(3):
        fights.reverted(KEY, "argocd-controller")
    waits = []
    for _ in range(5):
        waits.append(fights.delay_before_revert(KEY, "argocd-controller"))
        clock.now += 2
        assert fights.delay_before_revert(KEY, "argocd-controller") == pytest.approx(waits[-1] - 2)
        clock.now += waits[-1] - 2
        assert fights.delay_before_revert(KEY, "argocd-controller") == 0.0
        fights.reverted(KEY, "argocd-controller")
    assert waits == [5.0, 10.0, 20.0, 40.0, 40.0]
    # Someone else's change is ordinary drift, reverted at once (and ends this streak).
    assert fights.delay_before_revert(KEY, "kubectl") == 0.0


def test_the_fight_is_over_after_a_quiet_window_since_the_last_revert() -> None:
    fights, clock = tracker()
    assert fights.quiet_for(KEY) is None
    for _ in range(3):
        fights.reverted(KEY, "argocd-controller")
    clock.now += 20
    assert fights.quiet_for(KEY) == pytest.approx(40.0)
    clock.now += 40
    assert fights.quiet_for(KEY) == 0.0
    assert fights.forget(KEY) is True
    assert fights.fight(KEY) is None
    assert fights.forget(KEY) is False


def test_forget_all_counts_the_fights_it_ends() -> None:
    fights, _clock = tracker()
    for _ in range(3):
        fights.reverted(("ns", "a"), "argocd-controller")
        fights.reverted(("ns", "b"), "kustomize-controller")
    fights.reverted(("ns", "c"), "kubectl")
    assert fights.forget_all() == 2
    assert fights.fight(("ns", "a")) is None


@pytest.mark.parametrize(
    "policy",
    [
        {"threshold": 1},
        {"base_delay": 0.0},
        {"base_delay": 10.0, "max_delay": 5.0},
        {"max_delay": 60.0, "window": 60.0},
    ],
)
def test_policies_that_cannot_work_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="threshold"):
        FightPolicy(**policy)  # type: ignore[arg-type]
