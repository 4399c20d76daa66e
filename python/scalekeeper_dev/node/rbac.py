"""What the node's components may do: the kubelet's bootstrap role, and CoreDNS's read access.

RBAC stands in for the Node authorizer (the control plane runs RBAC only):
the bootstrap ClusterRole ``system:node`` is bound to this node's user.
kube-proxy's user ``system:kube-proxy`` is bound by the bootstrap policy already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scalekeeper_dev.manifests import cluster_role_binding

JSON = dict[str, Any]
# (method, path, body) -> (status, body): the control plane's admin client.
AdminRequest = Callable[[str, str, JSON | None], tuple[int, JSON]]


class RbacError(RuntimeError):
    pass


def grant(admin: AdminRequest, node_name: str, coredns_user: str) -> None:
    """Create the bindings (existing ones are kept)."""
    for path, obj in _objects(node_name, coredns_user):
        _create(admin, path, obj)


def _create(admin: AdminRequest, path: str, obj: JSON) -> None:
    status, body = admin("POST", path, obj)
    if status not in (201, 409):
        raise RbacError(f"creating {obj['kind']} {obj['metadata']['name']}: {status} {body}")


def _objects(node_name: str, coredns_user: str) -> list[tuple[str, JSON]]:
    """The kubelet's rights (bootstrap role system:node; RBAC stands in for the Node authorizer) and CoreDNS's."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"

    coredns_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "scalekeeper:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "namespaces", "pods"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    }
    return [
        (
            f"{rbac}/clusterrolebindings",
            cluster_role_binding(f"scalekeeper:node:{node_name}", "system:node", f"system:node:{node_name}"),
        ),
        (f"{rbac}/clusterroles", coredns_role),
        (
            f"{rbac}/clusterrolebindings",
            cluster_role_binding("scalekeeper:coredns", "scalekeeper:coredns", coredns_user),
        ),
    ]
