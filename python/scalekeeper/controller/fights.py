"""Fights over a Deployment's count: another writer keeps setting spec.replicas back after each revert.

The classic case is a GitOps tool whose Deployment manifest still carries
``replicas``: its self-heal re-applies git's count, the controller reverts the
drift, and so on forever (argoproj/argo-cd#5105, kedacore/keda#3052). Reverting
at full speed makes the pods oscillate and says nothing about why, so a streak
of reverts against one field manager is called a fight: it is reported (the
reconciler turns it into a condition, an Event and a metric) and each further
revert waits an exponential backoff instead of following at once.

Pure bookkeeping on an injected monotonic clock, so the rules are unit-tested
without a cluster. Only this process's reverts are counted: a new leader starts
from nothing, and would detect an ongoing fight again within ``threshold`` reverts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class FightPolicy:
    """When a streak of reverts is a fight, and how the reverts slow down then."""

    # Reverts against the same field manager, each within ``window`` seconds of the
    # previous one. A GitOps tool re-applies on every sync: Argo CD's self-heal after
    # 5 s, Flux at its interval (minutes), so the window spans a slow interval.
    threshold: int = 3
    window: float = 900.0
    # The first revert after detection waits ``base_delay``; each next one twice as long.
    base_delay: float = 5.0
    max_delay: float = 300.0

    def __post_init__(self) -> None:
        # A delay as long as the window would let the streak lapse mid-fight.
        if self.threshold < 2 or not 0 < self.base_delay <= self.max_delay < self.window:
            raise ValueError("need threshold >= 2 and 0 < base_delay <= max_delay < window")


@dataclass(frozen=True)
class Streak:
    """Consecutive reverts of one key's Deployment against one field manager."""

    manager: str
    reverts: int
    last_revert: float  # on the tracker's clock


class FightTracker(Generic[K]):
    def __init__(self, policy: FightPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._streaks: dict[K, Streak] = {}

    def fight(self, key: K) -> Streak | None:
        """The streak of ``key`` if it is a fight (at least ``threshold`` reverts), else None."""
        streak = self._streaks.get(key)
        return streak if streak is not None and streak.reverts >= self.policy.threshold else None

    def delay_before_revert(self, key: K, manager: str) -> float:
        """Seconds to wait before reverting ``manager``'s change: 0 unless fighting that manager."""
        streak = self.fight(key)
        if streak is None or not self._continues(streak, manager):
            return 0.0
        extra = streak.reverts - self.policy.threshold
        backoff = min(self.policy.max_delay, self.policy.base_delay * 2 ** min(extra, 32))
        return max(0.0, streak.last_revert + backoff - self._clock())

    def reverted(self, key: K, manager: str) -> bool:
        """Count one revert of ``manager``'s change; True when this revert starts a fight."""
        now = self._clock()
        streak = self._streaks.get(key)
        reverts = streak.reverts + 1 if streak is not None and self._continues(streak, manager) else 1
        self._streaks[key] = Streak(manager, reverts, now)
        return reverts == self.policy.threshold

    def quiet_for(self, key: K) -> float | None:
        """While fighting: seconds until the fight counts as over if nothing else happens; None if not fighting.

        0 means it is over now: the caller found the Deployment in sync, and the
        other side has left it alone for a whole window since the last revert.
        """
        streak = self.fight(key)
        if streak is None:
            return None
        return max(0.0, streak.last_revert + self.policy.window - self._clock())

    def forget(self, key: K) -> bool:
        """Drop ``key``'s history; True if it was fighting."""
        streak = self._streaks.pop(key, None)
        return streak is not None and streak.reverts >= self.policy.threshold

    def forget_all(self) -> int:
        """Drop every history (leadership lost); the number of fights that ended."""
        fights = sum(1 for streak in self._streaks.values() if streak.reverts >= self.policy.threshold)
        self._streaks.clear()
        return fights

    def condition_message(self, fight: Streak) -> str:
        """The Ready condition's message while fighting: who, and what ends it."""
        policy = self.policy
        return (
            f"field manager {fight.manager!r} keeps changing the Deployment's spec.replicas "
            f"({policy.threshold} or more reverts, each within {policy.window:.0f}s of the last): "
            "remove replicas from the Deployment's manifest in git (or make that tool ignore it); "
            f"until then scalekeeper reverts with backoff, at most every {policy.max_delay:.0f}s"
        )

    def event_note(self, manager: str) -> str:
        """The Warning Event's note when a fight begins."""
        policy = self.policy
        return (
            f"field manager {manager!r} set the Deployment's spec.replicas back {policy.threshold} times in a row; "
            "remove replicas from the Deployment's manifest in git (or make that tool ignore it). "
            f"scalekeeper now reverts with backoff, from {policy.base_delay:.0f}s up to {policy.max_delay:.0f}s"
        )

    def _continues(self, streak: Streak, manager: str) -> bool:
        """Whether a revert of ``manager``'s change now extends ``streak``."""
        return streak.manager == manager and self._clock() - streak.last_revert <= self.policy.window
