"""Raw JSON calls to the apiserver as the harness's admin, without a client library.

The control plane checks its own readiness and creates what its components
need (RBAC, fake Nodes) before any kubeconfig-based client could be set up,
and fault tests read ``/metrics``: a few plain HTTPS calls suffice.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from scalekeeper_dev.clusterpki import LOOPBACK, ClusterPki
from scalekeeper_dev.supervised import ControlPlaneError

JSON = dict[str, Any]


class AdminApi:
    def __init__(self, port: int, files: ClusterPki, host: str = LOOPBACK) -> None:
        self.port = port
        self.host = host
        self._files = files

    def request(self, method: str, path: str, body: JSON | None = None, *, timeout: float = 10.0) -> tuple[int, JSON]:
        """One call; returns (status, parsed body or {"text": ...})."""
        context = ssl.create_default_context(cafile=str(self._files.ca_cert))
        context.load_cert_chain(self._files.cert("admin"), self._files.key("admin"))
        conn = http.client.HTTPSConnection(self.host, self.port, context=context, timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"text": data.decode(errors="replace")}
        return response.status, parsed if isinstance(parsed, dict) else {"value": parsed}

    def create(self, path: str, manifest: JSON) -> None:
        """POST ``manifest``; one that exists already is fine."""
        status, body = self.request("POST", path, manifest)
        if status not in (201, 409):
            raise ControlPlaneError(f"creating {manifest['kind']} {manifest['metadata']['name']}: {status} {body}")

    def exists(self, path: str) -> bool:
        try:
            status, _ = self.request("GET", path, timeout=2.0)
        except (OSError, ValueError):
            return False
        return status == 200

    def ready(self) -> bool:
        """Whether the apiserver answers ``/readyz`` with 200."""
        return self.exists("/readyz")
