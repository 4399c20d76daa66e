"""Identity extraction, failure answers and access logging shared by the two API transports."""

from __future__ import annotations

import json
import logging

import pytest

from scalekeeper import logs
from scalekeeper.errors import Code, ServiceError
from scalekeeper.transport.failures import failure_for
from scalekeeper.transport.identity import names_from_grpc_auth_context, names_from_peercert


def test_grpc_identity_is_uri_and_dns_sans_plus_cn() -> None:
    auth = {
        "transport_security_type": [b"ssl"],
        "x509_common_name": [b"scalekeeper-writer"],
        "x509_subject_alternative_name": [b"svc.example", b"spiffe://scalekeeper.dev/writer", b"10.0.0.1"],
        "peer_dns": [b"svc.example"],
        "peer_uri": [b"spiffe://scalekeeper.dev/writer"],
        "x509_pem_cert": [b"-----BEGIN CERTIFICATE-----..."],
    }
    assert names_from_grpc_auth_context(auth) == {
        "scalekeeper-writer",
        "svc.example",
        "spiffe://scalekeeper.dev/writer",
    }


def test_grpc_identity_of_an_unauthenticated_peer_is_empty() -> None:
    assert names_from_grpc_auth_context({}) == frozenset()
    assert names_from_grpc_auth_context({"x509_common_name": [b""]}) == frozenset()


def test_peercert_identity_is_uri_and_dns_sans_plus_cn() -> None:
    peercert = {
        "subject": ((("organizationName", "team"),), (("commonName", "scalekeeper-reader"),)),
        "issuer": ((("commonName", "scalekeeper-dev-ca"),),),
        "subjectAltName": (
            ("DNS", "reader.example"),
            ("URI", "spiffe://scalekeeper.dev/reader"),
            ("IP Address", "10.0.0.2"),
            ("email", "ops@example.com"),
        ),
    }
    assert names_from_peercert(peercert) == {
        "scalekeeper-reader",
        "reader.example",
        "spiffe://scalekeeper.dev/reader",
    }


@pytest.mark.parametrize("peercert", [None, {}])
def test_peercert_identity_without_certificate_is_empty(peercert: dict[str, object] | None) -> None:
    assert names_from_peercert(peercert) == frozenset()


def _failure(error: BaseException):
    return failure_for(error, transport="grpc", method="GetReplicas", identity="cn")


@pytest.mark.parametrize("code", list(Code))
def test_service_errors_keep_code_status_and_message(code: Code) -> None:
    failure = _failure(ServiceError(code, "what to do"))
    assert failure.code is code
    assert failure.http_status == code.http_status
    assert failure.message == "what to do"


def test_unexpected_errors_are_internal_with_a_logged_correlation_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        failure = _failure(KeyError("/etc/secret/path token=abc"))
    assert (failure.code, failure.http_status) == (Code.INTERNAL, 500)
    assert "secret" not in failure.message
    assert "KeyError" not in failure.message
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.correlation_id in failure.message
    assert record.method == "GetReplicas"
    assert record.exc_info is not None


def test_correlation_ids_differ_per_failure() -> None:
    assert _failure(RuntimeError()).message != _failure(RuntimeError()).message


def test_json_log_lines_carry_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO")
    try:
        logs.log_call("grpc", "SetReplicas", "spiffe://x", "OK", 1.23456)
        logging.getLogger("t").error("boom", exc_info=ValueError("bad"))
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["method"] == "SetReplicas"
    assert lines[0]["identity"] == "spiffe://x"
    assert lines[0]["code"] == "OK"
    assert lines[0]["latency_ms"] == 1.235
    assert lines[0]["level"] == "info"
    assert "ValueError: bad" in lines[1]["exception"]


@pytest.mark.parametrize(
    ("level", "method", "code", "logged_as"),
    [
        ("INFO", "GetReplicas", "OK", None),  # successful reads only at DEBUG
        ("DEBUG", "GetReplicas", "OK", "debug"),
        ("INFO", "ListDeployments", "NOT_FOUND", "warning"),
        ("INFO", "SetReplicas", "OK", "info"),
        ("WARNING", "SetReplicas", "PERMISSION_DENIED", "warning"),
    ],
)
def test_access_log_levels(
    level: str, method: str, code: str, logged_as: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup(level)
    try:
        logs.log_call("http", method, "cn", code, 0.5)
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["level"] for line in lines] == ([logged_as] if logged_as else [])
