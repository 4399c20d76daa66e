"""Sections 3 and 4: how fast a change shows, and how fast the controller acts on one.

3. Watch propagation: a Deployment scaled through the apiserver's /scale until
   the new count arrives on a WatchReplicas stream and in GetReplicas.
4. Reconcile (SetReplicas until the apiserver's own watch shows the new
   spec.replicas) and drift revert (a direct /scale until it is put back).
Both run twice: on the apiserver alone (with the other sections), and on a
control plane that also runs kube-controller-manager, kube-scheduler and
KWOK nodes, where every scale also rolls Pods and writes Deployment status,
as on a real cluster. The measurements themselves are in ``bench_latency``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from scalekeeper.kube.client import KubeClient, connect
from scalekeeper.kube.resources import DEPLOYMENTS
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import bench_latency, bench_scale
from scalekeeper_dev.bench_env import BenchError, Certs, Scalekeeper
from scalekeeper_dev.bench_latency import Samples
from scalekeeper_dev.bench_report import Results, Target, log, ms, table
from scalekeeper_dev.controlplane import ControlPlane

WATCH_NAMESPACE = "bench-watch"
WATCH_NAMES = [f"watched-{i:02d}" for i in range(20)]
RECONCILE_NAMESPACE = "bench-reconcile"
RECONCILE_NAMES = [f"managed-{i:02d}" for i in range(20)]
TARGET_WATCH_P99_MS = 100.0
TARGET_RECONCILE_P99_MS = 250.0


async def setup(kube: KubeClient) -> None:
    for namespace, names in ((WATCH_NAMESPACE, WATCH_NAMES), (RECONCILE_NAMESPACE, ["warm-up", *RECONCILE_NAMES])):
        await bench_scale.create_namespace(kube, namespace)
        await bench_scale.create_deployments(kube, namespace, names)


async def measure_on_cluster(results: Results, plane: ControlPlane, certs: Certs, workdir: Path, changes: int) -> None:
    """Sections 3 and 4 again, on ``plane`` (which runs the controllers, the scheduler and KWOK)."""
    log("3-4 again on a control plane with kube-controller-manager, kube-scheduler and KWOK")
    kube = await connect(plane.kubeconfig)
    server = Scalekeeper(plane.kubeconfig, certs, workdir / "scalekeeper-cluster.log", ("--lease-name=bench-cluster",))
    try:
        await setup(kube)
        server.start()
        server.wait_ready()
        on_cluster = Results()
        await measure(on_cluster, kube, server, certs, changes)
        results.cluster_propagation, results.cluster_reconcile = on_cluster.propagation, on_cluster.reconcile
    finally:
        server.stop()
        await kube.close()


async def _wait_reconciled(kube: KubeClient, namespace: str, name: str, replicas: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = await kube.request("GET", DEPLOYMENTS.path(namespace, name))
        if deployment["spec"]["replicas"] == replicas:
            return
        await asyncio.sleep(0.1)
    raise BenchError(f"the controller did not scale {namespace}/{name} to {replicas} within {timeout:.0f}s")


async def measure(results: Results, kube: KubeClient, server: Scalekeeper, certs: Certs, changes: int) -> None:
    channel = grpc.aio.secure_channel(server.target, certs.grpc_credentials("writer"))
    try:
        log(f"3. watch propagation over {changes} changes")
        results.propagation = await bench_latency.watch_propagation(
            channel, kube, WATCH_NAMESPACE, WATCH_NAMES, changes
        )
        # The controller must hold its Lease before reconcile latency means anything.
        stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
        await stub.SetReplicas(pb.SetReplicasRequest(namespace=RECONCILE_NAMESPACE, name="warm-up", replicas=2))
        await _wait_reconciled(kube, RECONCILE_NAMESPACE, "warm-up", 2, timeout=90)
        log(f"4. reconcile and drift revert over {changes} changes each")
        results.reconcile = await bench_latency.reconcile_latency(
            channel, kube, RECONCILE_NAMESPACE, RECONCILE_NAMES, changes
        )
    finally:
        await channel.close()


def targets(results: Results) -> list[Target]:
    found = []
    for where, p, r in (
        ("", results.propagation, results.reconcile),
        (", cluster", results.cluster_propagation, results.cluster_reconcile),
    ):
        for label, samples, limit in (
            ("watch propagation to WatchReplicas", p.watch if p else None, TARGET_WATCH_P99_MS),
            ("watch propagation to GetReplicas", p.get if p else None, TARGET_WATCH_P99_MS),
            ("reconcile", r.reconcile if r else None, TARGET_RECONCILE_P99_MS),
            ("drift revert", r.drift_revert if r else None, TARGET_RECONCILE_P99_MS),
        ):
            if samples is not None:
                met = samples.p99 < limit and not samples.timeouts
                found.append(Target(f"{label} p99{where}", f"< {limit:.0f} ms", ms(samples.p99), met))
    return found


def _rows(samples: tuple[tuple[str, Samples], ...]) -> list[list[str]]:
    return [[label, str(len(s)), ms(s.p50), ms(s.p99), ms(s.worst), str(s.timeouts)] for label, s in samples]


def render(results: Results) -> list[str]:
    out: list[str] = []
    header = ["", "samples", "p50", "p99", "worst", "timeouts"]
    if results.propagation is not None:
        p = results.propagation
        out += [
            "",
            "## 3. Watch propagation",
            "",
            f"{len(p.watch)} changes, one at a time: a Deployment scaled through the apiserver's /scale subresource "
            "(timed from just before the PATCH) until the new count arrived on a WatchReplicas stream, and until "
            "GetReplicas (polled every millisecond) returned it.",
            "",
            *table(["until visible in", *header[1:]], _propagation_rows(p, "")),
        ]
        if results.cluster_propagation is not None:
            out += _rows_table_note("3")
            out += table(["until visible in", *header[1:]], _propagation_rows(results.cluster_propagation, ", cluster"))
    if results.reconcile is not None:
        r = results.reconcile
        out += [
            "",
            "## 4. Reconcile and drift revert",
            "",
            "Reconcile: SetReplicas until the apiserver's own watch of Deployments showed the new spec.replicas. "
            "Drift revert: a managed Deployment scaled directly through /scale until that watch showed it back at "
            "the desired count.",
            "",
            *table(header, _rows((("reconcile", r.reconcile), ("drift revert", r.drift_revert)))),
        ]
        c = results.cluster_reconcile
        if c is not None:
            out += _rows_table_note("4")
            out += table(
                header, _rows((("reconcile, cluster", c.reconcile), ("drift revert, cluster", c.drift_revert)))
            )
    return out


def _propagation_rows(p: bench_latency.PropagationResult, suffix: str) -> list[list[str]]:
    return _rows(
        (
            (f"WatchReplicas stream{suffix}", p.watch),
            (f"GetReplicas{suffix}", p.get),
            (f"(the PATCH itself returned){suffix}", p.apiserver_write),
            (f"WatchReplicas, timed from the PATCH's answer{suffix}", p.watch_after_write),
        )
    )


def _rows_table_note(section: str) -> list[str]:
    return [
        "",
        f"The same as section {section}, on a second control plane that also runs kube-controller-manager, "
        "kube-scheduler and KWOK fake nodes (`ControlPlane(components=Components.CLUSTER)`), so that each scale also "
        "creates or deletes Pods and the Deployment's status changes as on a real cluster:",
        "",
    ]
