"""A GitOps tool and the controller both setting a Deployment's count, against the real apiserver.

The "tool" is scripted: it server-side applies the Deployment manifest "from
git" as its own field manager, forced (as Argo CD with ServerSideApply and Flux
do) or not (``kubectl apply --server-side``), and self-heals in a loop in its
own thread, as Argo CD's selfHeal does, whenever the live count differs from git's.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from controller_harness import GROUP, PLURAL, VERSION, Cluster, Factory
from kubernetes.client.rest import ApiException
from prometheus_client import REGISTRY

from polling import eventually_async
from scalekeeper.controller.fights import FightPolicy
from scalekeeper_dev import manifests

TOOL = "argocd-controller"
# Short enough for a test: detection after 3 reverts, then reverts 1, 2, 4, 4 ... s apart; over after 8 s of quiet.
POLICY = FightPolicy(threshold=3, window=8.0, base_delay=1.0, max_delay=4.0)


class GitOpsTool:
    """Applies ``manifest`` (server-side, as ``TOOL``) and, once started, re-applies it on every drift."""

    def __init__(self, cluster: Cluster, manifest: dict[str, Any], *, force: bool) -> None:
        self._cluster = cluster
        self.manifest = manifest
        self.force = force
        self.applies = 0
        self.conflicts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._self_heal, name="gitops tool", daemon=True)

    def apply(self) -> None:
        try:
            self._cluster.apps.patch_namespaced_deployment(
                self.manifest["metadata"]["name"],
                self._cluster.ns,
                self.manifest,
                field_manager=TOOL,
                force=self.force,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as error:
            if error.status != 409:
                raise
            self.conflicts.append(json.loads(error.body)["message"])
        self.applies += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _self_heal(self) -> None:
        wanted = self.manifest["spec"].get("replicas")
        # The tool's own sync period (Argo CD's default self-heal is 5 s; faster here), not a test wait.
        while not self._stop.wait(0.1):
            live = self._cluster.deployment_replicas(self.manifest["metadata"]["name"])
            if wanted is not None and live != wanted:
                self.apply()


@pytest.fixture
def tools() -> Iterator[list[GitOpsTool]]:
    started: list[GitOpsTool] = []
    yield started
    for tool in started:
        tool.stop()


def fights_metric() -> float:
    return REGISTRY.get_sample_value("scalekeeper_replica_fights") or 0.0


def warning_reasons(cluster: Cluster, name: str) -> list[str]:
    return [e.reason for e in cluster.own_events(name) if e.type == "Warning"]


async def test_a_forced_self_healing_tool_is_a_fight_that_is_reported_and_backed_off(
    cluster: Cluster, start_controller: Factory, tools: list[GitOpsTool]
) -> None:
    tool = GitOpsTool(cluster, manifests.deployment("web", 2), force=True)
    tool.apply()  # the Deployment comes from git, replicas included
    cluster.create_scale("web", 5)
    before = fights_metric()
    _controller, kube, _cache = await start_controller(fights=POLICY)
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "first scaled to 5")

    tools.append(tool)
    tool.start()
    reason = "False/ConflictWithFieldManager"
    await eventually_async(lambda: cluster.ready_reason("web") == reason, "the fight reported in the condition")
    detected_at = kube.accepted_at("/deployments/web/scale")[-1]
    ready = cluster.ready("web")
    assert ready is not None
    assert repr(TOOL) in ready["message"]
    assert "git" in ready["message"]
    await eventually_async(lambda: "ConflictWithFieldManager" in warning_reasons(cluster, "web"), "a Warning Event")
    assert fights_metric() == before + 1
    assert "DriftReverted" in cluster.event_reasons("web")

    # Backed off: the tool heals within 0.1 s of each revert; the controller's reverts come ever further apart.
    await eventually_async(
        lambda: len([t for t in kube.accepted_at("/deployments/web/scale") if t >= detected_at]) >= 4,
        "three reverts after the fight was detected",
    )
    reverts = [t for t in kube.accepted_at("/deployments/web/scale") if t >= detected_at][:4]
    gaps = [later - earlier for earlier, later in itertools.pairwise(reverts)]
    assert all(gap >= delay - 0.05 for gap, delay in zip(gaps, (1.0, 2.0, 4.0), strict=True)), gaps

    # Git is fixed: the manifest no longer carries replicas. The fight ends after a quiet window.
    tool.stop()
    fixed = manifests.deployment("web")
    del fixed["spec"]["replicas"]
    GitOpsTool(cluster, fixed, force=True).apply()
    await eventually_async(lambda: cluster.deployment_replicas("web") == 5, "scalekeeper's count back")
    await eventually_async(
        lambda: cluster.ready_reason("web") == "True/Scaled", "Ready again after the quiet window", timeout=40
    )
    assert fights_metric() == before


async def test_a_tool_that_does_not_force_gets_a_conflict_naming_scalekeeper_and_no_fight(
    cluster: Cluster, start_controller: Factory, tools: list[GitOpsTool]
) -> None:
    tool = GitOpsTool(cluster, manifests.deployment("web", 2), force=False)
    tool.apply()
    cluster.create_scale("web", 5)
    _controller, kube, _cache = await start_controller(fights=POLICY)
    await eventually_async(lambda: cluster.ready_reason("web") == "True/Scaled", "scaled to 5")

    tools.append(tool)
    tool.start()
    await eventually_async(lambda: len(tool.conflicts) >= 3, "the tool's applies refused")
    assert 'conflict with "scalekeeper" with subresource "scale"' in tool.conflicts[0]
    assert ".spec.replicas" in tool.conflicts[0]
    assert cluster.deployment_replicas("web") == 5
    assert cluster.ready_reason("web") == "True/Scaled"
    assert len(kube.accepted_at("/deployments/web/scale")) == 1
    assert "DriftReverted" not in cluster.event_reasons("web")
    assert cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "web")["spec"] == {
        "replicas": 5
    }
