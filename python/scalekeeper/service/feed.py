"""The change log of the API view: every change of a Deployment's ``Replicas``, built once.

A WatchReplicas event combines two cached kinds (the Deployment and its
DeploymentScale), so the log that watch streams read sits here, above the
cache: a store handler turns each Deployment or DeploymentScale change into
one ``ReplicasEvent``, appends it to a ``ChangeLog``, and every stream reads
that same object (and the same serialized bytes) at its own pace. The
handler does O(1) work per change, however many streams are open.
"""

from __future__ import annotations

from scalekeeper.cache.changelog import ChangeLog
from scalekeeper.cache.projections import DeploymentView, Key, ScaleView
from scalekeeper.cache.store import EventType, Store
from scalekeeper.cache.waiters import Waiters
from scalekeeper.service.api_view import to_replicas
from scalekeeper.v1 import replicas_pb2 as pb

# About ten minutes of changes at 20 per second, or one full re-list of
# 10,000 Deployments, before a stream that stopped reading is cut off.
DEFAULT_CAPACITY = 10_000

_EVENT_TYPES = {
    EventType.ADDED: pb.ReplicasEvent.ADDED,
    EventType.MODIFIED: pb.ReplicasEvent.MODIFIED,
    EventType.DELETED: pb.ReplicasEvent.DELETED,
}


class ReplicasChange:
    """One WatchReplicas event and the Deployment it is about; shared by every stream, never mutated."""

    __slots__ = ("_wire", "key", "message")

    def __init__(self, key: Key, message: pb.ReplicasEvent) -> None:
        self.key = key
        self.message = message
        self._wire: bytes | None = None

    @classmethod
    def of(
        cls, event_type: pb.ReplicasEvent.Type.ValueType, deployment: DeploymentView, scale: ScaleView | None
    ) -> ReplicasChange:
        return cls(deployment.key, pb.ReplicasEvent(type=event_type, replicas=to_replicas(deployment, scale)))

    @property
    def wire(self) -> bytes:
        """The serialized event: computed by the first stream that sends it, reused by all others."""
        if self._wire is None:
            self._wire = self.message.SerializeToString()
        return self._wire


class _Wakeup:
    """Fired by the first change in a namespace after a stream of that namespace went to sleep."""

    __slots__ = ("first_seq", "waiters")

    def __init__(self) -> None:
        self.waiters = Waiters()
        self.first_seq = 0


class ReplicasFeed:
    def __init__(
        self, deployments: Store[DeploymentView], scales: Store[ScaleView], capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self.deployments = deployments
        self.scales = scales
        self.log: ChangeLog[ReplicasChange] = ChangeLog(capacity)
        # The newest change per Deployment: its ``Replicas`` is the API view as the cache holds it now,
        # built once per object version and shared by every GetReplicas until the next change.
        self._latest: dict[Key, ReplicasChange] = {}
        # Streams of one namespace sleep until a change in it, so that 900 of them do not all
        # wake (and scan the log) for every change somewhere else; the last sequence per namespace
        # tells a stream whether it may sleep at all.
        self._wakeups: dict[str, _Wakeup] = {}
        self._last_seq_in: dict[str, int] = {}
        self._remove_handlers = [deployments.add_handler(self._on_deployment), scales.add_handler(self._on_scale)]

    def close(self) -> None:
        """Stop following the cache and wake every stream, which then ends."""
        for remove in self._remove_handlers:
            remove()
        self._remove_handlers = []
        self.log.close()
        for wakeup in self._wakeups.values():
            wakeup.waiters.wake_all()
        self._wakeups.clear()

    async def wait_in(self, namespace: str, cursor: int) -> int:
        """Return once a change in ``namespace`` after ``cursor`` exists (or the log closed).

        Returns the cursor to read on from: just before the first such change,
        skipping the changes elsewhere that happened while the stream slept.
        """
        if self._last_seq_in.get(namespace, 0) > cursor or self.log.closed:
            return cursor
        wakeup = self._wakeups.get(namespace)
        if wakeup is None:
            wakeup = self._wakeups[namespace] = _Wakeup()
        await wakeup.waiters.wait()
        return max(cursor, wakeup.first_seq - 1)

    def _append(self, change: ReplicasChange) -> None:
        seq = self.log.append(change)
        namespace = change.key[0]
        self._last_seq_in[namespace] = seq
        wakeup = self._wakeups.pop(namespace, None)
        if wakeup is not None:
            wakeup.first_seq = seq
            wakeup.waiters.wake_all()

    def replicas(self, key: Key) -> pb.Replicas | None:
        """The API view of the Deployment ``key``; shared, so callers must not modify it."""
        change = self._latest.get(key)
        if change is not None:
            return change.message.replicas
        deployment = self.deployments.get(key)
        return self.view(deployment) if deployment is not None else None

    def view(self, deployment: DeploymentView) -> pb.Replicas:
        """The API view of a cached Deployment; shared, so callers must not modify it."""
        change = self._latest.get(deployment.key)
        if change is None:
            # Listed before the feed subscribed (not the case in the server, which builds the feed first).
            change = self._remember(self.current(deployment))
        return change.message.replicas

    def current(self, deployment: DeploymentView) -> ReplicasChange:
        """The ADDED event for ``deployment`` as the cache holds it now."""
        return ReplicasChange.of(pb.ReplicasEvent.ADDED, deployment, self.scales.get(deployment.key))

    def _remember(self, change: ReplicasChange) -> ReplicasChange:
        self._latest[change.key] = change
        return change

    def _on_deployment(self, event: EventType, old: DeploymentView | None, new: DeploymentView | None) -> None:
        deployment = new or old
        if deployment is None:
            return
        change = ReplicasChange.of(_EVENT_TYPES[event], deployment, self.scales.get(deployment.key))
        if event is EventType.DELETED:
            self._latest.pop(deployment.key, None)
        else:
            self._remember(change)
        self._append(change)

    def _on_scale(self, _event: EventType, old: ScaleView | None, new: ScaleView | None) -> None:
        scale = new or old
        deployment = self.deployments.get(scale.key) if scale is not None else None
        if deployment is not None:
            self._append(self._remember(ReplicasChange.of(pb.ReplicasEvent.MODIFIED, deployment, new)))
