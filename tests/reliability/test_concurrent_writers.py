"""Optimistic concurrency under contention: 50 writers, one Deployment, 30 seconds.

Each writer reads the DeploymentScale's version with GetReplicas and writes
with ``expected_desired_version`` set to it. Whatever the interleaving, a
correct server answers every write OK or ABORTED, never accepts two changing
writes made against the same version (that would be a lost update), and ends with
the state of the last accepted write, in its cache, in the DeploymentScale and
(through the controller) in the Deployment.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from reliability_helpers import Kube, get, internal_errors_in_log, readyz
from server_harness import ServerProcess, eventually

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc

WRITERS = 50
SECONDS = 30.0
NAME = "contended"


@dataclass(frozen=True)
class Accepted:
    expected: str
    version: str
    replicas: int


def _aio_channel(server: ServerProcess) -> grpc.aio.Channel:
    credential = server.pki.clients["writer"]
    cert, key = credential.read()
    credentials = grpc.ssl_channel_credentials(server.pki.ca_file.read_bytes(), key, cert)
    return grpc.aio.secure_channel(f"localhost:{server.grpc_port}", credentials)


async def test_fifty_writers_with_expected_versions(
    start_server: Callable[..., ServerProcess],
    namespace: str,
    deployments: Callable[..., list[str]],
    kube: Kube,
) -> None:
    deployments(namespace, [NAME], replicas=1)
    server = start_server(controller=True)
    sync_stub = server.stub("writer")
    eventually(lambda: get(sync_stub, namespace, NAME).spec_replicas == 1, "the cache to hold the Deployment", 30)
    sync_stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name=NAME, replicas=1), timeout=10)

    accepted: list[Accepted] = []
    codes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS

    async with _aio_channel(server) as channel:
        stub = replicas_pb2_grpc.ReplicaServiceStub(channel)

        async def writer(seed: int) -> None:
            rng = random.Random(seed)
            while loop.time() < deadline:
                try:
                    current = await stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name=NAME), timeout=10)
                except grpc.aio.AioRpcError as error:
                    codes[f"GetReplicas {error.code().name}"] += 1
                    continue
                want = rng.randint(0, 20)
                request = pb.SetReplicasRequest(
                    namespace=namespace, name=NAME, replicas=want, expected_desired_version=current.desired_version
                )
                try:
                    answer = await stub.SetReplicas(request, timeout=10)
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1
                    continue
                codes["OK"] += 1
                assert answer.desired_replicas == want
                accepted.append(Accepted(current.desired_version, answer.desired_version, want))

        await asyncio.gather(*(writer(i) for i in range(WRITERS)))

    print(f"SetReplicas outcomes over {SECONDS:.0f}s with {WRITERS} writers: {dict(codes)}")
    assert set(codes) <= {"OK", "ABORTED"}, f"unexpected codes: {dict(codes)}"
    assert accepted, "no write was accepted at all"
    assert codes["ABORTED"], "50 writers on one object and no conflict: the expected version is not enforced"
    assert all(a.version for a in accepted), "an accepted write returned no desired_version"
    # A write of the count the object already has changes nothing and keeps its version, so a later
    # write against that version is rightly accepted too. What must never happen: two accepted writes
    # against one version that both changed the object (the second overwrote the first unseen).
    changes = Counter(a.expected for a in accepted if a.version != a.expected)
    lost = {version: n for version, n in changes.items() if n > 1}
    assert not lost, f"writes accepted twice against the same version (lost updates): {lost}"
    for version in {a.expected for a in accepted if a.version == a.expected}:
        no_ops = {a.replicas for a in accepted if a.expected == version and a.version == version}
        assert len(no_ops) == 1, f"no-op writes against {version} claim different counts: {no_ops}"

    # The version is "<uid>/<generation>" and generations grow with each change of the spec: their order is the
    # order of the writes (a test-only look inside the opaque version).
    last = max(accepted, key=lambda a: int(a.version.rsplit("/", 1)[1]))
    assert int(kube.scale_object(namespace, NAME)["spec"]["replicas"]) == last.replicas
    eventually(
        lambda: get(sync_stub, namespace, NAME).desired_replicas == last.replicas, "the cache at the last write", 10
    )
    eventually(lambda: kube.spec_replicas(namespace, NAME) == last.replicas, "the Deployment at the last write", 60)

    assert server.returncode is None
    assert readyz(server) == 200
    assert not internal_errors_in_log(server)
