"""Small Kubernetes manifests shared by the tests, ``make run`` and the benchmarks."""

from __future__ import annotations

from typing import Any


def deployment(name: str, replicas: int = 1, *, image: str = "nginx") -> dict[str, Any]:
    """A minimal Deployment; no kubelet ever runs it on the local control plane."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }
