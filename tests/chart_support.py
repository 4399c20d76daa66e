"""Helpers shared by the chart's unit tests (render) and integration tests (install).

Why a module and not fixtures: both test layers need the same `helm template`
call and the same view of the RBAC the chart grants, and the expected
permissions must be written down once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "scalekeeper"
CRD_FILE = CHART / "files" / "crds" / "deploymentscales.yaml"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))

# What the server (cache, SetReplicas) and the controller need in each watched
# namespace: (apiGroup, resource) -> verbs. The chart must grant exactly this.
WATCH_PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    # Exactly the calls the code makes: the reflectors list and watch; SetReplicas
    # creates (POST, or an apply that creates) and patches (apply, merge patch);
    # the controller PUTs /scale, merge-patches /status and POSTs Events.
    ("apps", "deployments"): frozenset({"list", "watch"}),
    ("apps", "deployments/scale"): frozenset({"update"}),
    ("scalekeeper.dev", "deploymentscales"): frozenset({"list", "watch", "create", "patch"}),
    ("scalekeeper.dev", "deploymentscales/status"): frozenset({"patch"}),
    ("autoscaling", "horizontalpodautoscalers"): frozenset({"list", "watch"}),
    ("events.k8s.io", "events"): frozenset({"create"}),
}
LEASE_VERBS = frozenset({"get", "create", "update"})

# `helm template` has no cluster to ask, so it assumes the Kubernetes version
# compiled into helm (v1.20 when built without Helm's own ldflags), which the
# chart's kubeVersion (>= 1.30, for the preStop sleep action) rejects.
KUBE_VERSION = "1.37.0"


def helm_binary() -> Path:
    from scalekeeper_dev import toolchain

    return toolchain.ensure("helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=check, timeout=180)


def render(
    values_files: Sequence[Path] = (),
    set_values: Iterable[str] = (),
    *,
    release: str = "sk",
    namespace: str = "scalekeeper",
) -> list[dict]:
    """`helm template` the chart; one dict per object (hooks included)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for path in values_files:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    out = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def refusal(set_values: Iterable[str]) -> str:
    """`helm template` with these values must fail: its error output."""
    args = ["template", "sk", str(CHART), "--kube-version", KUBE_VERSION]
    for item in set_values:
        args += ["--set", item]
    result = helm(*args, check=False)
    assert result.returncode != 0, "helm template accepted " + " ".join(set_values)
    return result.stderr


def by_kind(objects: Sequence[Mapping], kind: str) -> list[Mapping]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Sequence[Mapping], kind: str, name: str | None = None) -> Mapping:
    found = [obj for obj in by_kind(objects, kind) if name is None or obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def granted(rules: Sequence[Mapping]) -> dict[tuple[str, str], frozenset[str]]:
    """RBAC rules flattened to (apiGroup, resource) -> verbs, for resource rules without names."""
    result: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule, "watch rules must not be limited by name"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result.setdefault((group, resource), set()).update(rule["verbs"])
    return {key: frozenset(verbs) for key, verbs in result.items()}
