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
