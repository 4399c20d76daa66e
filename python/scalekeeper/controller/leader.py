"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules, for asyncio.

Why not ``kubernetes.aio.leaderelection`` (it ships with the client): it never
releases the lease on a clean stop (a successor waits a full lease duration),
it stamps local naive times with a "Z" (wrong off UTC) and drops renewTime
whenever the microseconds happen to be 0, its requests are not bounded by the
renew deadline (a hung request keeps a stale leader "leading"), and it is
built around one run() per process rather than a campaign that can lose and
win again. This module is the same algorithm on ``KubeClient``:

* Every write is an update preconditioned on the Lease's resourceVersion, so
  two candidates can never both believe they won: one gets 409.
* Expiry is judged on the LOCAL monotonic clock from the moment this candidate
  last saw the record change, never from the (other machine's) renewTime, so
  clock skew between replicas does not matter.
* A leader that cannot renew within ``renew_deadline`` steps down (stops its
  workers) before the others may take over (``lease_duration`` after they
  last saw a renewal): renew_deadline < lease_duration leaves the gap.
* An empty holderIdentity means released: takeable at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import LEASES

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease spec fields leader election uses."""

    holder: str
    lease_duration_seconds: int
    acquire_time: str
    renew_time: str
    transitions: int

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime") or "",
            renew_time=spec.get("renewTime") or "",
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder or None,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


def micro_time(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ElectionState:
    """The pure part of the algorithm: what this candidate has seen, and whether it may write.

    ``observe`` is fed every record read from the apiserver with the local
    monotonic time; ``next_record`` says which record to write (or None: the
    lease is held by someone else and not yet expired).
    """

    def __init__(self, identity: str, lease_duration: float) -> None:
        self.identity = identity
        self.lease_duration = lease_duration
        self.observed: LeaseRecord | None = None
        self.observed_at = 0.0

    def observe(self, record: LeaseRecord, now: float) -> None:
        if record != self.observed:
            self.observed = record
            self.observed_at = now

    def held_by_other(self, now: float) -> bool:
        record = self.observed
        return (
            record is not None
            and record.holder not in ("", self.identity)
            and now < self.observed_at + self.lease_duration
        )

    def next_record(self, now: float, wall_time: str) -> LeaseRecord | None:
        """The record to write to acquire or renew, or None when the lease is someone else's."""
        if self.held_by_other(now):
            return None
        record = self.observed
        duration = max(1, round(self.lease_duration))
        if record is not None and record.holder == self.identity:
            return replace(record, lease_duration_seconds=duration, renew_time=wall_time)
        # Taking it from another holder, or after a release, is a transition; creating it is not.
        transitions = record.transitions + 1 if record is not None else 0
        return LeaseRecord(
            holder=self.identity,
            lease_duration_seconds=duration,
            acquire_time=wall_time,
            renew_time=wall_time,
            transitions=transitions,
        )

    def release_record(self, wall_time: str) -> LeaseRecord | None:
        """The record that gives the lease up (client-go's: no holder, 1 s duration), if we hold it."""
        record = self.observed
        if record is None or record.holder != self.identity:
            return None
        return replace(record, holder="", lease_duration_seconds=1, acquire_time=wall_time, renew_time=wall_time)


class LeaderElector:
    """Campaigns for the Lease; runs ``on_started`` when it wins and ``on_stopped`` when it loses or stops.

    One ``run`` at a time. Cancelling ``run`` stops leading (awaiting
    ``on_stopped`` first, so the workers are gone) and then releases the Lease.
    """

    def __init__(self, kube: KubeClient, config: LeaseConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self.config = config
        self._clock = clock
        self._state = ElectionState(config.identity, config.lease_duration)
        self._resource_version = ""
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def identity(self) -> str:
        return self.config.identity

    async def run(self, on_started: Callback, on_stopped: Callback) -> None:
        """Campaign until cancelled: follower -> leader -> (lost) follower -> ..."""
        try:
            while True:
                await self._acquire()
                self._leading = True
                log.info("became leader", extra={"lease": self.config.name, "identity": self.identity})
                try:
                    await on_started()
                    await self._renew_until_lost()
                finally:
                    # Still "leader" until the workers are gone: is_leader must never
                    # be False while this replica can still write.
                    try:
                        await on_stopped()
                    finally:
                        self._leading = False
                log.warning("lost leadership", extra={"lease": self.config.name, "identity": self.identity})
        finally:
            await self._release()

    async def _acquire(self) -> None:
        while True:
            if await self._attempt(timeout=self.config.retry_period):
                return
            # Jitter (as client-go) so that followers started together do not poll in lockstep.
            await asyncio.sleep(self.config.retry_period * (1 + 0.2 * random.random()))

    async def _renew_until_lost(self) -> None:
        last_renew = self._clock()
        while True:
            await asyncio.sleep(self.config.retry_period)
            while True:
                remaining = last_renew + self.config.renew_deadline - self._clock()
                if remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._attempt(timeout=remaining)
                except TimeoutError:
                    return
                if renewed:
                    last_renew = self._clock()
                    break
                if self._state.held_by_other(self._clock()):
                    return  # someone else holds it now: stop at once, do not wait for the deadline
                await asyncio.sleep(min(self.config.retry_period, max(0.0, remaining)))

    async def _attempt(self, *, timeout: float) -> bool:
        """One acquire-or-renew; any failure is a failed attempt, never the end of the campaign."""
        # The renew deadline (asyncio.timeout) cancels from outside: CancelledError is no Exception.
        try:
            return await self._try_acquire_or_renew(timeout=timeout)
        except Exception:
            log.exception("leader election attempt failed", extra={"lease": self.config.name})
            return False

    async def _try_acquire_or_renew(self, *, timeout: float) -> bool:
        path = LEASES.path(self.config.namespace, self.config.name)
        try:
            lease = await self._kube.request("GET", path, timeout=timeout)
        except KubeApiError as error:
            if not error.is_not_found:
                log.warning("reading the lease failed", extra={"lease": self.config.name, "error": str(error)})
                return False
            return await self._create(timeout=timeout)
        self._resource_version = lease.get("metadata", {}).get("resourceVersion", "")
        self._state.observe(LeaseRecord.from_lease(lease), self._clock())
        record = self._state.next_record(self._clock(), micro_time())
        if record is None:
            return False
        return await self._update(record, timeout=timeout)

    async def _create(self, *, timeout: float) -> bool:
        record = ElectionState(self.identity, self.config.lease_duration).next_record(self._clock(), micro_time())
        assert record is not None
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.config.name, "namespace": self.config.namespace},
            "spec": record.spec(),
        }
        try:
            created = await self._kube.request("POST", LEASES.path(self.config.namespace), body=body, timeout=timeout)
        except KubeApiError as error:
            if not error.is_conflict:  # 409 AlreadyExists: another candidate was faster
                log.warning("creating the lease failed", extra={"lease": self.config.name, "error": str(error)})
            return False
        self._resource_version = created.get("metadata", {}).get("resourceVersion", "")
        self._state.observe(record, self._clock())
        return True

    async def _update(self, record: LeaseRecord, *, timeout: float) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.config.name,
                "namespace": self.config.namespace,
                "resourceVersion": self._resource_version,
            },
            "spec": record.spec(),
        }
        try:
            updated = await self._kube.request(
                "PUT", LEASES.path(self.config.namespace, self.config.name), body=body, timeout=timeout
            )
        except KubeApiError as error:
            if not error.is_conflict:
                log.warning("updating the lease failed", extra={"lease": self.config.name, "error": str(error)})
            return False
        self._resource_version = updated.get("metadata", {}).get("resourceVersion", "")
        self._state.observe(LeaseRecord.from_lease(updated), self._clock())
        return True

    async def _release(self) -> None:
        record = self._state.release_record(micro_time())
        if record is None:
            return
        # Bounded and best effort: if it fails, the others wait out the lease duration.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.retry_period):
                if await self._update(record, timeout=self.config.retry_period):
                    log.info("released the lease", extra={"lease": self.config.name, "identity": self.identity})
