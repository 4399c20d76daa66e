"""The record logic of leader election: who may write the Lease, and what."""

from __future__ import annotations

import pytest

from scalekeeper.controller.leader import ElectionState, LeaseConfig, LeaseRecord, micro_time

WALL = "2025-01-01T00:00:00.000000Z"
LATER = "2025-01-01T00:00:02.000000Z"


def held_by(holder: str, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, 15, WALL, WALL, transitions)


def test_absent_lease_is_created_by_us() -> None:
    state = ElectionState("me", 15)
    record = state.next_record(0.0, WALL)
    assert record == LeaseRecord("me", 15, WALL, WALL, 0)


def test_lease_of_another_is_respected_until_it_expires_on_our_clock() -> None:
    state = ElectionState("me", 15)
    state.observe(held_by("other"), now=100.0)
    assert state.held_by_other(100.0)
    assert state.next_record(114.9, LATER) is None
    # Seeing the same record again does not restart the clock...
    state.observe(held_by("other"), now=110.0)
    assert state.next_record(114.9, LATER) is None
    taken = state.next_record(115.0, LATER)
    assert taken == LeaseRecord("me", 15, LATER, LATER, 1)


def test_a_renewal_by_the_holder_restarts_the_clock() -> None:
    state = ElectionState("me", 15)
    state.observe(held_by("other"), now=100.0)
    state.observe(LeaseRecord("other", 15, WALL, LATER, 0), now=110.0)
    assert state.next_record(120.0, LATER) is None
    assert state.next_record(125.0, LATER) is not None


def test_released_lease_is_taken_at_once() -> None:
    state = ElectionState("me", 15)
    state.observe(LeaseRecord("", 1, WALL, WALL, 3), now=100.0)
    assert not state.held_by_other(100.0)
    assert state.next_record(100.0, LATER) == LeaseRecord("me", 15, LATER, LATER, 4)


def test_holder_renews_keeping_acquire_time_and_transitions() -> None:
    state = ElectionState("me", 15)
    state.observe(LeaseRecord("me", 15, WALL, WALL, 2), now=100.0)
    assert state.next_record(101.0, LATER) == LeaseRecord("me", 15, WALL, LATER, 2)


def test_release_only_when_holding() -> None:
    state = ElectionState("me", 15)
    assert state.release_record(LATER) is None
    state.observe(held_by("other"), now=1.0)
    assert state.release_record(LATER) is None
    state.observe(LeaseRecord("me", 15, WALL, WALL, 2), now=2.0)
    assert state.release_record(LATER) == LeaseRecord("", 1, LATER, LATER, 2)


def test_lease_record_round_trips_through_the_lease_spec() -> None:
    record = LeaseRecord("me", 15, WALL, LATER, 2)
    assert LeaseRecord.from_lease({"spec": record.spec()}) == record
    released = LeaseRecord("", 1, WALL, WALL, 2).spec()
    assert released["holderIdentity"] is None
    assert LeaseRecord.from_lease({}) == LeaseRecord("", 0, "", "", 0)


def test_config_rejects_inconsistent_timings() -> None:
    LeaseConfig("ns", "lease", "me")
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaseConfig("ns", "lease", "me", lease_duration=5, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        LeaseConfig("ns", "lease", "")


def test_micro_time_format() -> None:
    value = micro_time()
    assert value.endswith("Z")
    assert len(value) == len("2025-01-01T00:00:00.000000Z")
