"""The README's Argo CD and Flux examples (examples/gitops/) parse, and follow the guide's rules.

That the Kubernetes objects among them validate against the real schemas (the
DeploymentScale CRD included) is checked against the apiserver, by a server-side
dry run, in tests/integration/test_gitops_examples_dry_run.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "gitops"
APP = EXAMPLES / "app"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for path in sorted(EXAMPLES.rglob("*.yaml")) for doc in documents(path) if doc["kind"] == kind]


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_is_yaml_of_named_objects(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"]["name"]


def test_the_deployment_leaves_the_count_to_its_deploymentscale() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    scales = of_kind("DeploymentScale")
    assert deployments
    assert scales
    for deployment in deployments.values():
        assert "replicas" not in deployment["spec"], "a count in git's Deployment fights scalekeeper"
    for scale in scales:
        assert scale["apiVersion"] == "scalekeeper.dev/v1alpha1"
        assert scale["metadata"]["name"] in deployments  # named like its Deployment


def test_both_tools_sync_the_app_directory() -> None:
    (application,) = of_kind("Application")
    assert application["apiVersion"] == "argoproj.io/v1alpha1"
    assert ROOT / application["spec"]["source"]["path"] == APP
    assert application["spec"]["syncPolicy"]["automated"]["selfHeal"] is True

    (kustomization,) = of_kind("Kustomization")
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert (ROOT / kustomization["spec"]["path"]).resolve() == APP
    (repository,) = of_kind("GitRepository")
    assert kustomization["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repository["metadata"]["name"]}
