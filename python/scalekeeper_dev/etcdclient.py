"""The few etcd calls the harness makes (health, revision, compaction), over etcd's JSON gateway.

Fault tests compact etcd's history to make watches fail with 410 Gone; no
etcd client library is needed for three calls.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import Any

from scalekeeper_dev.supervised import ControlPlaneError

JSON = dict[str, Any]


class EtcdClient:
    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: JSON | None = None) -> tuple[int, JSON]:
        parsed = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=5.0)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def healthy(self) -> bool:
        try:
            status, body = self._call("GET", "/health")
        except OSError:
            return False
        return status == 200 and body.get("health") == "true"

    def revision(self) -> int:
        """The current revision (what Kubernetes reports as resourceVersion)."""
        # Any range answer carries the store revision in its header.
        status, body = self._call("POST", "/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
        if status != 200:
            raise ControlPlaneError(f"etcd range failed: {status} {body}")
        return int(body["header"]["revision"])

    def compact(self, revision: int) -> None:
        status, body = self._call("POST", "/v3/kv/compaction", {"revision": str(revision), "physical": True})
        if status != 200:
            raise ControlPlaneError(f"etcd compaction to {revision} failed: {status} {body}")
