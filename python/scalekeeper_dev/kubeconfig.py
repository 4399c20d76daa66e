"""Read and write self-contained kubeconfig files.

Every credential the harness hands out (admin, a user with groups, a
ServiceAccount token) is a kubeconfig file, because that is the one format
kubectl, the official client (sync and ``kubernetes.aio``) and scalekeeper's
``--kubeconfig`` flag all accept. Certificates are embedded (``*-data``) so a
file stays valid when copied or when the directory it came from is removed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    token: str | None = None,
    name: str = "scalekeeper-dev",
) -> Path:
    """Write a one-context kubeconfig authenticating by client certificate or bearer token."""
    if (client_cert_pem is None) != (client_key_pem is None):
        raise ValueError("a client certificate needs its key")
    user: dict[str, str] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        user["client-certificate-data"] = _b64(client_cert_pem)
        user["client-key-data"] = _b64(client_key_pem)
    if token is not None:
        user["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Credentials inside: readable by the owner only.
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass(frozen=True)
class ClusterInfo:
    """Where a kubeconfig's current context points, and how to trust it."""

    server: str
    ca_pem: bytes | None  # None: the system trust store (or insecure-skip-tls-verify)


def read_cluster_info(path: Path, context: str | None = None) -> ClusterInfo:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    context_name = context or config["current-context"]
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    ca_pem: bytes | None = None
    if "certificate-authority-data" in cluster:
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        ca_path = Path(cluster["certificate-authority"])
        ca_pem = (ca_path if ca_path.is_absolute() else path.parent / ca_path).read_bytes()
    return ClusterInfo(server=cluster["server"], ca_pem=ca_pem)
