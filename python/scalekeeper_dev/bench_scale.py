"""Setup and client-side measurements for the 10,000-Deployment case.

Creating the objects is setup, not a measurement: it only has to be fast, so
requests go out concurrently (bounded by a semaphore that matches the
client's connection pool).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENTS
from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import manifests

CREATE_CONCURRENCY = 24


async def create_namespace(kube: KubeClient, name: str) -> None:
    try:
        await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    except KubeApiError as error:
        if not error.is_conflict:
            raise


async def create_deployments(kube: KubeClient, namespace: str, names: list[str], *, replicas: int = 1) -> None:
    await create_many(kube, [(namespace, name) for name in names], replicas=replicas)


async def create_many(kube: KubeClient, keys: list[tuple[str, str]], *, replicas: int = 1) -> None:
    """Create Deployments (namespaces must exist); existing ones are kept."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(namespace: str, name: str) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    await kube.request("POST", DEPLOYMENTS.path(namespace), body=manifests.deployment(name, replicas))
                    return
                except KubeApiError as error:
                    if error.is_conflict:
                        return
                    # 429 (apiserver overload protection) or a dropped connection: back off and retry.
                    if error.status not in (0, 429, 500, 503, 504) or attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(create(ns, name) for ns, name in keys))


@dataclass
class ListAllResult:
    seconds: float
    pages: int
    items: int


async def list_all(channel: grpc.aio.Channel, page_size: int) -> ListAllResult:
    """ListDeployments over every page, across all namespaces."""
    stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
    token, pages, items = "", 0, 0
    started = time.perf_counter()
    while True:
        answer = await stub.ListDeployments(pb.ListDeploymentsRequest(page_size=page_size, page_token=token))
        pages += 1
        items += len(answer.deployments)
        token = answer.next_page_token
        if not token:
            break
    return ListAllResult(time.perf_counter() - started, pages, items)
