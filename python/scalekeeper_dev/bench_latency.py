"""End-to-end latencies that involve the apiserver: watch propagation, reconcile, drift revert.

Each measurement is one change at a time (never overlapping), so a sample is
the latency of that change alone, not of a queue. Time is taken with
``time.perf_counter`` in this one process; "visible" is observed, never
assumed:

* watch propagation: a Deployment is scaled through the apiserver's /scale
  subresource; the sample ends when the new count shows in a WatchReplicas
  stream, and (separately) when GetReplicas, polled every millisecond, shows it;
* reconcile: SetReplicas, until the apiserver's own watch of Deployments shows
  ``spec.replicas`` at the new count;
* drift revert: a managed Deployment scaled directly, until that watch shows
  ``spec.replicas`` back at the desired count.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from scalekeeper.kube.client import KubeClient
from scalekeeper.kube.resources import DEPLOYMENTS
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc

CHANGE_TIMEOUT = 10.0
GET_POLL_SECONDS = 0.001


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with 200 samples, p99 is the second-worst, not an interpolation."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Samples:
    values_ms: list[float] = field(default_factory=list)
    timeouts: int = 0

    def add(self, seconds: float) -> None:
        self.values_ms.append(seconds * 1000)

    @property
    def p50(self) -> float:
        return percentile(self.values_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.values_ms, 99)

    @property
    def worst(self) -> float:
        return max(self.values_ms) if self.values_ms else math.nan

    def __len__(self) -> int:
        return len(self.values_ms)


async def scale_directly(kube: KubeClient, namespace: str, name: str, replicas: int) -> None:
    await kube.request(
        "PATCH",
        DEPLOYMENTS.path(namespace, name, "scale"),
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )


class DeploymentWatch:
    """The apiserver's own view: every ``spec.replicas`` each Deployment of a namespace had, with arrival times."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self.history: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self._kube.request("GET", DEPLOYMENTS.path(self._namespace))
        for item in listing.get("items") or ():
            self.history[item["metadata"]["name"]].append((time.perf_counter(), int(item["spec"]["replicas"])))
        version = listing["metadata"]["resourceVersion"]
        response = await self._kube.stream(
            DEPLOYMENTS.path(self._namespace),
            {"watch": True, "resourceVersion": version, "timeoutSeconds": 3600},
            read_timeout=3600,
        )
        self._task = asyncio.create_task(self._run(response))

    async def _run(self, response: Any) -> None:
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                obj = event["object"]
                now = time.perf_counter()
                async with self._changed:
                    self.history[obj["metadata"]["name"]].append((now, int(obj["spec"]["replicas"])))
                    self._changed.notify_all()
        finally:
            response.release()

    def mark(self, name: str) -> int:
        return len(self.history[name])

    async def wait_sequence(
        self, name: str, since: int, values: Sequence[int], timeout: float = CHANGE_TIMEOUT
    ) -> float:
        """Time at which the events after index ``since`` have shown ``values`` in this order."""

        def found() -> float | None:
            wanted = list(values)
            for at, replicas in self.history[name][since:]:
                if replicas == wanted[0]:
                    wanted.pop(0)
                    if not wanted:
                        return at
            return None

        async def wait() -> float:
            async with self._changed:
                while (at := found()) is None:
                    await self._changed.wait()
                return at

        return await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class ReplicasWatch:
    """A WatchReplicas stream, with the time each (name, spec_replicas) first arrived."""

    def __init__(self, stub: replicas_pb2_grpc.ReplicaServiceStub, namespace: str) -> None:
        self._call = stub.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace))
        self.current: dict[str, int] = {}
        self._waiters: dict[tuple[str, int], asyncio.Future[float]] = {}
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self._call:
            replicas = event.replicas
            self.current[replicas.name] = replicas.spec_replicas
            waiter = self._waiters.pop((replicas.name, replicas.spec_replicas), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())

    def expect(self, name: str, spec_replicas: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[(name, spec_replicas)] = future
        return future

    async def wait_snapshot(self, names: Sequence[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(name in self.current for name in names):
            if self._task.done() or time.monotonic() > deadline:
                raise TimeoutError(f"WatchReplicas snapshot incomplete ({len(self.current)}/{len(names)})")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _poll_get(stub: replicas_pb2_grpc.ReplicaServiceStub, namespace: str, name: str, want: int) -> float:
    request = pb.GetReplicasRequest(namespace=namespace, name=name)
    while True:
        answer = await stub.GetReplicas(request)
        if answer.spec_replicas == want:
            return time.perf_counter()
        await asyncio.sleep(GET_POLL_SECONDS)


@dataclass
class PropagationResult:
    watch: Samples
    get: Samples
    apiserver_write: Samples
    watch_after_write: Samples  # from the PATCH's answer: scalekeeper's own share


async def watch_propagation(
    channel: grpc.aio.Channel, kube: KubeClient, namespace: str, names: Sequence[str], changes: int
) -> PropagationResult:
    """Scale unmanaged Deployments through the apiserver, one change at a time."""
    stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
    stream = ReplicasWatch(stub, namespace)
    result = PropagationResult(Samples(), Samples(), Samples(), Samples())
    try:
        await stream.wait_snapshot(names)
        for i in range(changes):
            name = names[i % len(names)]
            new = stream.current[name] % 9 + 1  # 1..9, never the current count
            arrived = stream.expect(name, new)
            started = time.perf_counter()
            poll = asyncio.create_task(_poll_get(stub, namespace, name, new))
            try:
                await scale_directly(kube, namespace, name, new)
                written = time.perf_counter()
                result.apiserver_write.add(written - started)
                seen = await asyncio.wait_for(arrived, CHANGE_TIMEOUT)
                result.watch.add(seen - started)
                # The event can overtake the PATCH's own answer: that counts as no delay at all.
                result.watch_after_write.add(max(0.0, seen - written))
                result.get.add(await asyncio.wait_for(poll, CHANGE_TIMEOUT) - started)
            except TimeoutError:
                result.watch.timeouts += 1
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
    finally:
        await stream.stop()
    return result


@dataclass
class ReconcileResult:
    reconcile: Samples
    drift_revert: Samples


async def reconcile_latency(
    channel: grpc.aio.Channel, kube: KubeClient, namespace: str, names: Sequence[str], changes: int
) -> ReconcileResult:
    """SetReplicas until the Deployment has it; then direct scales until the controller puts them back."""
    stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
    watch = DeploymentWatch(kube, namespace)
    await watch.start()
    result = ReconcileResult(Samples(), Samples())
    desired: dict[str, int] = {}
    try:
        for i in range(changes):
            name = names[i % len(names)]
            current = watch.history[name][-1][1]
            new = current % 9 + 1
            since = watch.mark(name)
            started = time.perf_counter()
            await stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name=name, replicas=new))
            try:
                result.reconcile.add(await watch.wait_sequence(name, since, [new]) - started)
                desired[name] = new
            except TimeoutError:
                result.reconcile.timeouts += 1
        for i in range(changes):
            name = names[i % len(names)]
            if name not in desired:
                continue
            want = desired[name]
            drift = want % 9 + 1
            since = watch.mark(name)
            started = time.perf_counter()
            await scale_directly(kube, namespace, name, drift)
            try:
                result.drift_revert.add(await watch.wait_sequence(name, since, [drift, want]) - started)
            except TimeoutError:
                result.drift_revert.timeouts += 1
    finally:
        await watch.stop()
    return result
