"""SetReplicas on a DeploymentScale that a GitOps tool applies from git, on both transports.

Git wins by default: a write the tool's next sync would revert is refused up
front, naming the tool's field manager. ``take_ownership`` takes the count over
deliberately. Writes through the ``/scale`` subresource (``kubectl scale
dscale``) are imperative, like SetReplicas itself, and do not block it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from controller_harness import GROUP, PLURAL, VERSION, scale_manifest
from kubernetes import client
from kubernetes.client.rest import ApiException
from server_harness import eventually
from transport_clients import Api, wait_visible

TOOL = "argocd-controller"


class Git:
    """A scripted GitOps tool: server-side applies the DeploymentScale "from git" as ``TOOL``."""

    def __init__(self, admin_api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(admin_api)
        self.ns = namespace

    def apply(self, name: str, replicas: int, *, force: bool = True) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            PLURAL,
            name,
            scale_manifest(name, replicas),
            field_manager=TOOL,
            force=force,
            _content_type="application/apply-patch+yaml",
        )

    def stored(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return obj

    def replicas_owners(self, name: str) -> set[tuple[str, str]]:
        return {
            (entry["manager"], entry.get("subresource", ""))
            for entry in self.stored(name)["metadata"]["managedFields"]
            if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
        }


@pytest.fixture
def git(admin_api: client.ApiClient, namespace: str) -> Git:
    return Git(admin_api, namespace)


def applied_from_git(writer: Api, git: Git, namespace: str, replicas: int) -> str:
    """Let git's DeploymentScale reach the server's cache; its desired_version."""
    git.apply("web", replicas)
    outcome = eventually(
        lambda: (o := wait_visible(writer, namespace, "web")).body["desiredReplicas"] == replicas and o,
        "git's count in the server's cache",
    )
    return str(outcome.body["desiredVersion"])


def test_a_count_git_declares_is_refused_naming_the_tool(
    writer: Api, git: Git, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    deployments(namespace, ["web"])
    version = applied_from_git(writer, git, namespace, 2)

    for expected in (None, version):  # last write wins, and conditional
        outcome = writer.set(namespace, "web", 5, expected)
        assert outcome.code == "FAILED_PRECONDITION", outcome
        assert repr(TOOL) in outcome.message
        assert "in git" in outcome.message
        assert "take_ownership" in outcome.message
    assert git.stored("web")["spec"]["replicas"] == 2
    assert git.replicas_owners("web") == {(TOOL, "")}
    # The tool's next sync is unaffected: nothing to conflict with.
    git.apply("web", 3, force=False)


def test_take_ownership_takes_the_count_over_and_the_tool_then_conflicts(
    writer: Api, git: Git, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    deployments(namespace, ["web"])
    applied_from_git(writer, git, namespace, 2)

    outcome = writer.set(namespace, "web", 5, take_ownership=True)
    assert outcome.code == "OK", outcome
    assert outcome.body["desiredReplicas"] == 5
    assert git.replicas_owners("web") == {("scalekeeper", "")}
    with pytest.raises(ApiException) as conflict:
        git.apply("web", 2, force=False)
    assert conflict.value.status == 409
    assert 'conflict with "scalekeeper"' in json.loads(conflict.value.body)["message"]

    # Owned now: later writes need no flag.
    eventually(lambda: wait_visible(writer, namespace, "web").body["desiredReplicas"] == 5, "the cache at 5")
    assert writer.set(namespace, "web", 6).code == "OK"
    # A forced sync (what Argo CD and Flux do) wins it back, and the refusal applies again.
    git.apply("web", 2)
    assert git.replicas_owners("web") == {(TOOL, "")}
    assert writer.set(namespace, "web", 7).code == "FAILED_PRECONDITION"


def test_take_ownership_with_an_expected_version(
    writer: Api, git: Git, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    deployments(namespace, ["web"])
    version = applied_from_git(writer, git, namespace, 2)

    outcome = writer.set(namespace, "web", 4, version, take_ownership=True)
    assert outcome.code == "OK", outcome
    assert git.stored("web")["spec"]["replicas"] == 4
    assert git.replicas_owners("web") == {("scalekeeper", "")}
    assert writer.set(namespace, "web", 5, version, take_ownership=True).code == "ABORTED"  # still conditional


def test_kubectl_scale_of_the_deploymentscale_does_not_block_set_replicas(
    writer: Api, git: Git, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    deployments(namespace, ["web"])
    wait_visible(writer, namespace, "web")
    assert writer.set(namespace, "web", 2).code == "OK"
    # `kubectl scale dscale/web --replicas=7`: an imperative write through /scale, not a declaration.
    git.custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "web", {"spec": {"replicas": 7}}, field_manager="kubectl"
    )
    assert git.replicas_owners("web") == {("kubectl", "scale")}

    outcome = writer.set(namespace, "web", 4)
    assert outcome.code == "OK", outcome
    assert git.stored("web")["spec"]["replicas"] == 4
    assert git.replicas_owners("web") == {("scalekeeper", "")}
