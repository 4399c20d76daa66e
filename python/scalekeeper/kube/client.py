"""The one place that builds a Kubernetes client, and the raw calls made through it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.aio import client as k8s_client
from kubernetes.aio import config as k8s_config

from scalekeeper.kube.resources import FIELD_MANAGER

JSON = dict[str, Any]


class KubeApiError(Exception):
    """A non-2xx answer from the apiserver, or no answer at all (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_conflict(self) -> bool:
        return self.status == 409

    @property
    def is_gone(self) -> bool:
        return self.status == 410


# The verbs that accept ``fieldManager``: every write that can change an object.
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


class KubeClient:
    """JSON in, JSON out, over the official client's authentication and connection pool.

    Every write carries ``field_manager`` (unless the caller names another), so
    managedFields says who changed what: without it the apiserver derives the
    manager from the User-Agent, and the official client's is ``OpenAPI-Generator``.
    """

    def __init__(self, api_client: k8s_client.ApiClient, *, field_manager: str) -> None:
        self._api = api_client
        self.field_manager = field_manager

    async def close(self) -> None:
        await self._api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: JSON | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        if method in _WRITE_METHODS:
            query = {"fieldManager": self.field_manager, **(query or {})}
        response = await self._send(method, path, query=query, body=body, content_type=content_type, timeout=timeout)
        try:
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise KubeApiError(0, "Unavailable", f"reading the answer failed: {error!r}") from error
        finally:
            response.release()
        parsed: JSON = json.loads(data) if data else {}
        return parsed

    async def stream(
        self,
        path: str,
        query: Mapping[str, str | int | bool],
        *,
        read_timeout: float,
        connect_timeout: float = 15.0,
    ) -> aiohttp.ClientResponse:
        """Open a streaming GET (a watch); the caller reads lines and releases the response.

        There is no total timeout, since a watch lives for minutes; instead every
        socket read, the response headers included, must make progress within
        ``read_timeout``. That is what detects a stuck watch: a frozen apiserver
        or a half-open connection leaves the stream silent, never closed.
        """
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        return await self._send("GET", path, query=query, timeout=timeout)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None,
        body: JSON | None = None,
        content_type: str = "application/json",
        timeout: float | aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        query_params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()]
        method, url, headers, serialized_body, _ = await self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query_params,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        session = self._session()
        client_timeout = timeout if isinstance(timeout, aiohttp.ClientTimeout) else aiohttp.ClientTimeout(total=timeout)
        data = json.dumps(serialized_body) if serialized_body is not None else None
        try:
            response = await session.request(method, url, headers=headers, data=data, timeout=client_timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise KubeApiError(0, "Unavailable", f"{method} {path}: {error!r}") from error
        if response.status >= 300:
            try:
                payload = await response.text()
            except (aiohttp.ClientError, TimeoutError):
                payload = ""
            finally:
                response.release()
            raise _api_error(response.status, response.reason or "", payload)
        return response

    def _session(self) -> aiohttp.ClientSession:
        # The official client creates its aiohttp session (with the cluster's TLS
        # context and connection limit) lazily; reuse it rather than keeping a second pool.
        rest = self._api.rest_client
        if rest.pool_manager is None:
            rest.pool_manager = rest._create_pool_manager()
        return rest.pool_manager


def _api_error(status: int, reason: str, payload: str) -> KubeApiError:
    try:
        message = json.loads(payload).get("message", payload)
    except (ValueError, AttributeError):
        message = payload
    return KubeApiError(status, reason, str(message)[:500])


async def connect(kubeconfig: Path | None, *, field_manager: str = FIELD_MANAGER) -> KubeClient:
    """A client from the kubeconfig file, or from the pod's ServiceAccount when there is none.

    ``kubeconfig`` None means in-cluster when running in a pod, else ``~/.kube/config``.
    """
    configuration = k8s_client.Configuration()
    if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        await k8s_config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            client_configuration=configuration,
            persist_config=False,
        )
    # Enough parallel connections for the open watches plus the writers.
    configuration.connection_pool_maxsize = 32
    return KubeClient(k8s_client.ApiClient(configuration), field_manager=field_manager)
