"""The real server's lifecycle: readiness and grpc health, metrics, reflection, certificate
rotation without a restart, and a graceful SIGTERM with streams in flight."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_harness import REPO, ServerPki, ServerProcess, StartServer, eventually, replace_file

from scalekeeper.v1 import replicas_pb2 as pb
from scalekeeper.v1 import replicas_pb2_grpc
from scalekeeper_dev import pki
from scalekeeper_dev.controlplane import free_port

SERVICE = "scalekeeper.v1.ReplicaService"


def grpc_health(server: ServerProcess, service: str = "") -> str:
    stub = health_pb2_grpc.HealthStub(server.channel("reader"))
    answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scalekeeper", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0
    assert "--grpc-port" in result.stdout
    assert "--drain-seconds" in result.stdout


def test_ready_server_reports_the_same_everywhere(scalekeeper_server: ServerProcess) -> None:
    assert scalekeeper_server.health_get("/healthz") == (200, "ok\n")
    assert scalekeeper_server.health_get("/readyz")[0] == 200
    assert grpc_health(scalekeeper_server) == "SERVING"
    assert grpc_health(scalekeeper_server, SERVICE) == "SERVING"


def test_unreachable_apiserver_is_unready_but_alive(
    start_server: StartServer, test_cluster: object, tmp_path: Path
) -> None:
    config = yaml.safe_load(Path(test_cluster.admin_kubeconfig).read_text())  # type: ignore[attr-defined]
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    broken = tmp_path / "broken.kubeconfig"
    broken.write_text(yaml.safe_dump(config))
    server = start_server(f"--kubeconfig={broken}", wait_ready=False)
    assert server.health_get("/healthz")[0] == 200
    status, text = server.health_get("/readyz")
    assert status == 503
    assert text.startswith("not ready")
    eventually(lambda: grpc_health(server) == "NOT_SERVING", "grpc health NOT_SERVING")
    assert grpc_health(server, SERVICE) == "NOT_SERVING"
    with pytest.raises(grpc.RpcError) as caught:
        server.stub("reader").ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    result = server.http("reader").get("/v1/deployments")
    assert result.status == 503
    assert result.body["code"] == "UNAVAILABLE"
    assert server.health_get("/healthz")[0] == 200


def test_reflection_lists_services(scalekeeper_server: ServerProcess) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(scalekeeper_server.channel("reader"))
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {service.name for answer in answers for service in answer.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_grpcurl_list_without_proto_files(scalekeeper_server: ServerProcess) -> None:
    from scalekeeper_dev import toolpins

    binary = toolpins.BINARIES["grpcurl"].install_dir / "grpcurl"
    if not binary.exists():
        pytest.skip("grpcurl is not built (python -m scalekeeper_dev tools, or toolchain.ensure('grpcurl'))")
    clients = scalekeeper_server.pki.clients
    base = [
        str(binary),
        "-cacert",
        str(scalekeeper_server.pki.ca_file),
        "-cert",
        str(clients["writer"].cert),
        "-key",
        str(clients["writer"].key),
        f"localhost:{scalekeeper_server.grpc_port}",
    ]
    listed = subprocess.run([*base, "list"], check=False, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert SERVICE in listed.stdout.split()
    described = subprocess.run([*base, "describe", SERVICE], check=False, capture_output=True, text=True, timeout=30)
    assert "WatchReplicas" in described.stdout


def test_metrics(scalekeeper_server: ServerProcess) -> None:
    stub = scalekeeper_server.stub("writer")
    stub.ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.GetReplicas(pb.GetReplicasRequest(namespace="default", name="nope-nope"), timeout=10)
    scalekeeper_server.http("reader").get("/v1/deployments")
    status, text = scalekeeper_server.health_get("/metrics")
    assert status == 200
    expected = [
        'scalekeeper_request_duration_seconds_count{code="OK",method="ListDeployments",transport="grpc"}',
        'scalekeeper_request_duration_seconds_count{code="NOT_FOUND",method="GetReplicas",transport="grpc"}',
        'scalekeeper_request_duration_seconds_count{code="OK",method="ListDeployments",transport="http"}',
        'scalekeeper_request_duration_seconds_bucket{code="OK",le="0.1",method="ListDeployments",transport="grpc"}',
        'scalekeeper_cache_objects{kind="deployments"}',
        "scalekeeper_ready 1.0",
    ]
    for series in expected:
        assert series in text, series


# -- certificate rotation ---------------------------------------------------------------------------------


def served_cn(server: ServerProcess, port: str) -> str:
    """The CN of the certificate a NEW connection to ``port`` is served."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read what is served
    number = server.grpc_port if port == "grpc" else server.http_port
    with (
        socket.create_connection(("127.0.0.1", number), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())


def rotate_server_cert(pki_files: ServerPki, ca: pki.CertificateAuthority, common_name: str) -> None:
    issued = ca.issue_server(common_name)
    # Key first: for a moment the pair mismatches, which the server must ride out.
    replace_file(pki_files.server_key, issued.key_pem)
    replace_file(pki_files.server_cert, issued.cert_pem)


def can_call(server: ServerProcess, port: str, role: str, ca_file: Path | None = None) -> bool:
    try:
        if port == "grpc":
            channel = server.channel(role, ca_file=ca_file)
            stub = replicas_pb2_grpc.ReplicaServiceStub(channel)
            stub.ListDeployments(pb.ListDeploymentsRequest(page_size=1), timeout=10)
            channel.close()
            return True
        return server.http(role, ca_file=ca_file).get("/v1/deployments?page_size=1").status == 200
    except (grpc.RpcError, OSError, ssl.SSLError):
        return False


@pytest.mark.parametrize("port", ["grpc", "http"])
def test_certificate_rotation_without_restart(start_server: StartServer, own_pki: ServerPki, port: str) -> None:
    server = start_server(pki_files=own_pki)
    pid = server.process.pid if server.process else None
    assert served_cn(server, port) == "CN=scalekeeper"
    assert can_call(server, port, "writer")

    # 1. A new server certificate from the same CA.
    rotate_server_cert(own_pki, own_pki.ca, "scalekeeper-2")
    eventually(lambda: served_cn(server, port) == "CN=scalekeeper-2", "the new server certificate")
    assert can_call(server, port, "writer")

    # 2. A new CA: new server certificate, new client certificates; the old CA's are refused.
    new_ca = pki.CertificateAuthority.create("scalekeeper-test-ca-2")
    old_ca_file = own_pki.directory / "old-ca.crt"
    old_ca_file.write_bytes(own_pki.ca_file.read_bytes())
    own_pki.ca = new_ca
    own_pki.issue("writer2", "scalekeeper-writer", uris=("spiffe://scalekeeper.dev/writer",))
    issued = new_ca.issue_server("scalekeeper-3")
    replace_file(own_pki.server_key, issued.key_pem)
    replace_file(own_pki.server_cert, issued.cert_pem)
    replace_file(own_pki.ca_file, new_ca.cert_pem)
    eventually(lambda: served_cn(server, port) == "CN=scalekeeper-3", "the new CA's server certificate")
    eventually(lambda: can_call(server, port, "writer2"), "a client of the new CA to be accepted")
    # The old client certificate, even trusting whatever the server presents, is refused.
    combined = own_pki.directory / "both-cas.crt"
    combined.write_bytes(old_ca_file.read_bytes() + new_ca.cert_pem)
    assert not can_call(server, port, "writer", ca_file=combined)
    assert server.returncode is None
    assert server.process is not None
    assert server.process.pid == pid


def test_broken_files_do_not_stop_serving(start_server: StartServer, own_pki: ServerPki) -> None:
    server = start_server(pki_files=own_pki)
    replace_file(own_pki.server_cert, b"garbage")
    assert can_call(server, "grpc", "writer")
    assert can_call(server, "http", "writer")
    assert any("not usable" in r.get("msg", "") for r in server.log_records())


def test_unreadable_certificates_fail_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    server = ServerProcess([f"--tls-cert={missing}"], ServerPki.create(tmp_path / "pki"), tmp_path / "bad.log")
    server.start()
    assert server.wait_exit(timeout=60) == 1
    assert any(r.get("msg") == "start-up failed" for r in server.log_records()), server.log_text()


# -- shutdown -----------------------------------------------------------------------------------------


def test_sigterm_drains_and_ends_streams_cleanly(
    start_server: StartServer, namespace: str, deployments: Callable[..., list[str]]
) -> None:
    drain = 10.0
    server = start_server(f"--drain-seconds={drain}")
    deployments(namespace, ["streamed"])
    reader = server.stub("reader")
    eventually(
        lambda: reader.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="streamed"), timeout=5),
        "the Deployment in the cache",
    )
    grpc_stream = reader.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=60)
    assert next(grpc_stream).replicas.name == "streamed"
    connection = server.http("reader").connection(timeout=60)
    connection.request("GET", f"/v1/watch/deployments?namespace={namespace}")
    http_stream = connection.getresponse()
    assert http_stream.status == 200
    assert json.loads(http_stream.readline())["replicas"]["name"] == "streamed"

    started = time.monotonic()
    server.signal(signal.SIGTERM)
    # Both streams end cleanly: gRPC with status OK, HTTP with the end of the body.
    for _event in grpc_stream:  # whatever was still queued, then the end
        pass
    assert grpc_stream.code() == grpc.StatusCode.OK
    rest = http_stream.read().decode()
    assert '"error"' not in rest
    connection.close()
    assert server.wait_exit(timeout=drain + 15) == 0
    assert time.monotonic() - started < drain + 15
    messages = [r.get("msg") for r in server.log_records()]
    assert "draining" in messages
    assert "drained" in messages
    # New connections are refused once it is gone.
    assert not can_call(server, "grpc", "reader")


def test_sigint_also_exits_zero(start_server: StartServer) -> None:
    server = start_server()
    server.signal(signal.SIGINT)
    assert server.wait_exit(timeout=30) == 0


def test_readiness_goes_down_on_sigterm_before_the_drain_ends(start_server: StartServer) -> None:
    """grpc health's Watch stream sees NOT_SERVING when SIGTERM arrives, before the process goes away."""
    server = start_server("--drain-seconds=10")
    stub = health_pb2_grpc.HealthStub(server.channel("reader"))
    updates = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=60)
    assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
    server.signal(signal.SIGTERM)
    # The stream itself stays open until the drain ends; NOT_SERVING must come first.
    assert next(updates).status == health_pb2.HealthCheckResponse.NOT_SERVING
    status, text = server.health_get("/readyz")  # the health port outlives the drain
    assert (status, text) == (503, "not ready: shutting down\n")
    updates.cancel()
    assert server.wait_exit(timeout=30) == 0
