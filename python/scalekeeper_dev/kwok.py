"""KWOK: simulated nodes on which Pods are scheduled, become Ready and are deleted.

KWOK (``sigs.k8s.io/kwok``) plays the kubelet of Node objects that carry its
annotation: it keeps their Ready condition and Lease fresh and moves the Pods
bound to them through the lifecycle its *stages* describe. Those stages are
KWOK's own, read from the pinned module's ``kustomize/stage/fast`` profile
(node initialize, node heartbeat with lease, pod ready, pod complete, pod
delete) by following its kustomization files, so they change only with the
pinned version. They are passed to ``kwok --config``, which needs no CRDs.
KWOK's ClusterRole likewise comes from the module (``kustomize/rbac``).

Nothing ever connects to a fake node's address: it is only reported in the
Node's status (the apiserver prefers InternalIP, never a host name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_ANNOTATION_VALUE = "fake"
NODE_NAME_PREFIX = "kwok-node-"
NODE_IP = "10.200.0.1"  # reported, never dialled
POD_CIDR = "10.244.0.0/16"
# KWOK's default Lease is shorter than its renewal interval under load: the
# node flapped NotReady until it was raised (notes/real-node, failure 9).
NODE_LEASE_SECONDS = 40
# Fake Pods cost nothing to run: far more per node than a kubelet's 110, so
# that one node holds every test's Pods (a benchmark may ask for more nodes).
NODE_CAPACITY = {"cpu": "1000", "memory": "4Ti", "pods": "1000"}
STAGE_PROFILE = "kustomize/stage/fast"
ROLE_FILE = "kustomize/rbac/role.yaml"

JSON = dict[str, Any]


class KwokModuleError(RuntimeError):
    """The pinned KWOK module does not have the files this harness reads."""


def _kustomization_files(directory: Path) -> list[Path]:
    """The YAML files a kustomization lists, depth first; only plain ``resources`` are supported."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources"}
    if unsupported:
        raise KwokModuleError(f"{directory}/kustomization.yaml uses {sorted(unsupported)}: not supported here")
    files: list[Path] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        files.extend(_kustomization_files(path) if path.is_dir() else [path])
    return files


def stage_config(module_dir: Path) -> str:
    """KWOK's ``fast`` stages from its module, as one multi-document ``--config`` file."""
    files = _kustomization_files(module_dir / STAGE_PROFILE)
    stages = [yaml.safe_load(path.read_text()) for path in files]
    if not stages or any(stage.get("kind") != "Stage" for stage in stages):
        raise KwokModuleError(f"{module_dir / STAGE_PROFILE} does not resolve to KWOK Stage documents only")
    return yaml.safe_dump_all(stages, sort_keys=False)


def stage_names(config: str) -> list[str]:
    return [str(stage["metadata"]["name"]) for stage in yaml.safe_load_all(config)]


def controller_role(module_dir: Path) -> JSON:
    """KWOK's ClusterRole, from its module."""
    for document in yaml.safe_load_all((module_dir / ROLE_FILE).read_text()):
        if document and document.get("kind") == "ClusterRole":
            role: JSON = document
            return role
    raise KwokModuleError(f"no ClusterRole in {module_dir / ROLE_FILE}")


def node_name(index: int) -> str:
    return f"{NODE_NAME_PREFIX}{index}"


def fake_node(name: str, labels: dict[str, str] | None = None) -> JSON:
    """A Node that KWOK manages (its annotation); schedulable by any Pod, no taint."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: NODE_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                **(labels or {}),
            },
        },
        "status": {"allocatable": dict(NODE_CAPACITY), "capacity": dict(NODE_CAPACITY)},
    }


def argv(binary: Path, *, kubeconfig: Path, config: Path, server_port: int) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}={NODE_ANNOTATION_VALUE}",
        f"--cidr={POD_CIDR}",
        f"--node-ip={NODE_IP}",
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        f"--server-address=127.0.0.1:{server_port}",
    ]


def node_ready(node: JSON) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
