"""Small Kubernetes manifests shared by the tests, ``make run`` and the benchmarks."""

from __future__ import annotations

from typing import Any


def deployment(
    name: str, replicas: int = 1, *, image: str = "nginx", node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    """A minimal Deployment; on the local cluster its Pods run on KWOK's fake nodes (no image is pulled)."""
    labels = {"app": name}
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def cluster_role_binding(name: str, role: str, user: str) -> dict[str, Any]:
    """Binds ClusterRole ``role`` to ``user`` (a certificate's CN): the harness's components authenticate so."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
