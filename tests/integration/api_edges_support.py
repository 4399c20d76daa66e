"""The target of the API edge-case tests (test_api_edges*.py) and what they check it with.

One Deployment, ``NAME``, is managed by the ``managed`` fixture (``conftest.py``)
at a desired count of 2; every bad input must leave its DeploymentScale as it
was and log no server error.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from server_harness import ServerProcess

NAME = "edge"


def scale_object(admin_api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "deploymentscales", NAME
    )


def error_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("level") in {"error", "critical"}]
