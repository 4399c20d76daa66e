"""Pure input handling of the service layer: validation, page tokens, authorization."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from scalekeeper.cache.projections import ScaleView
from scalekeeper.errors import Code, ServiceError
from scalekeeper.service import paging, validation
from scalekeeper.service.authz import Authorizer, Identity, Permission
from scalekeeper.service.versions import NOT_MANAGED, DesiredVersion, desired_version


def code_of(call: object, *args: object, **kwargs: object) -> Code:
    with pytest.raises(ServiceError) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    return raised.value.code


@pytest.mark.parametrize("name", ["web", "a", "web-1", "a.b.c", "x" * 253])
def test_valid_deployment_names(name: str) -> None:
    assert validation.deployment_name(name) == name


@pytest.mark.parametrize("name", ["", "Web", "-web", "web-", "we_b", "x" * 254, "ü", "a..b", "web\n", "../etc"])
def test_invalid_deployment_names(name: str) -> None:
    assert code_of(validation.deployment_name, name) is Code.INVALID_ARGUMENT


@pytest.mark.parametrize("namespace", ["", "a.b", "x" * 64, "NS", "ns-"])
def test_invalid_namespaces(namespace: str) -> None:
    assert code_of(validation.namespace, namespace) is Code.INVALID_ARGUMENT


def test_empty_namespace_allowed_where_optional() -> None:
    assert validation.namespace("", required=False) == ""


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(ServiceError) as raised:
        validation.deployment_name("X" * 10_000)
    assert len(raised.value.message) < 300


@pytest.mark.parametrize(("value", "ok"), [(0, True), (10, True), (11, False), (-1, False), (2**31 - 1, False)])
def test_replicas_bounds(value: int, ok: bool) -> None:
    if ok:
        assert validation.replicas(value, 10) == value
    else:
        assert code_of(validation.replicas, value, 10) is Code.INVALID_ARGUMENT


def test_page_size_defaults_and_bounds() -> None:
    assert validation.page_size(0) == validation.DEFAULT_PAGE_SIZE
    assert validation.page_size(validation.MAX_PAGE_SIZE) == validation.MAX_PAGE_SIZE
    for bad in (-1, validation.MAX_PAGE_SIZE + 1):
        assert code_of(validation.page_size, bad) is Code.INVALID_ARGUMENT


def test_page_token_round_trip() -> None:
    token = paging.encode("team-a", ("team-a", "web"))
    assert paging.decode(token, "team-a") == ("team-a", "web")
    assert paging.decode("", "team-a") is None


def forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!!",
        "é",
        forged({"v": 2, "ns": "", "after": ["a", "b"]}),
        forged({"v": 1, "ns": "", "after": ["a"]}),
        forged({"v": 1, "ns": "", "after": [1, 2]}),
        forged([1, 2, 3]),
        forged("text"),
        base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),  # deeper than the JSON parser's stack
        base64.urlsafe_b64encode(b'{"v": ' + b"1" * 5000 + b"}").decode(),  # more digits than int() converts
    ],
)
def test_bad_page_tokens_are_invalid_argument(token: str) -> None:
    assert code_of(paging.decode, token, "") is Code.INVALID_ARGUMENT


def test_page_token_from_another_namespace_is_refused() -> None:
    token = paging.encode("team-a", ("team-a", "web"))
    with pytest.raises(ServiceError) as raised:
        paging.decode(token, "team-b")
    assert raised.value.code is Code.INVALID_ARGUMENT
    assert "team-a" in raised.value.message


def test_writer_may_read_and_write_reader_only_read() -> None:
    authorizer = Authorizer(readers=["spiffe://x/reader"], writers=["writer-cn"])
    writer = Identity(frozenset({"writer-cn", "dns.example"}))
    reader = Identity(frozenset({"spiffe://x/reader"}))
    authorizer.authorize(writer, Permission.WRITE, "SetReplicas")
    authorizer.authorize(writer, Permission.READ, "GetReplicas")
    authorizer.authorize(reader, Permission.READ, "GetReplicas")
    assert code_of(authorizer.authorize, reader, Permission.WRITE, "SetReplicas") is Code.PERMISSION_DENIED


def test_unknown_identity_is_denied_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    stranger = Identity(frozenset({"spiffe://elsewhere/thing"}))
    assert code_of(Authorizer([], []).authorize, stranger, Permission.READ, "ListDeployments") is (
        Code.PERMISSION_DENIED
    )
    assert any(getattr(r, "identity", None) == "spiffe://elsewhere/thing" for r in caplog.records)


def test_identity_display_prefers_uri_san() -> None:
    assert str(Identity(frozenset({"cn-name", "spiffe://td/workload"}))) == "spiffe://td/workload"
    assert str(Identity(frozenset())) == "<anonymous>"


def test_desired_version_round_trips_and_ignores_resource_version() -> None:
    scale = ScaleView.from_object(
        {
            "metadata": {"namespace": "ns", "name": "web", "uid": "0b5e-9a", "resourceVersion": "77", "generation": 4},
            "spec": {"replicas": 3},
        }
    )
    version = str(DesiredVersion.of(scale))
    assert version == "0b5e-9a/4" == desired_version(scale)
    assert desired_version(None) == ""
    assert DesiredVersion.parse(version) == DesiredVersion.of(scale)
    # A status write changes the resourceVersion, not the version callers hold.
    assert DesiredVersion.of(dataclasses.replace(scale, resource_version="78")) == DesiredVersion.of(scale)
    assert DesiredVersion.of(dataclasses.replace(scale, generation=5)) != DesiredVersion.of(scale)
    assert DesiredVersion.of(dataclasses.replace(scale, uid="other")) != DesiredVersion.of(scale)


def test_the_empty_version_is_that_of_an_unmanaged_deployment() -> None:
    assert DesiredVersion.parse("") == DesiredVersion.of(None) == NOT_MANAGED
    assert str(NOT_MANAGED) == ""


@pytest.mark.parametrize(
    "version", ["0", "4711", "abc", "/1", "uid/", "uid/-1", "uid/1.5", " a/1", "a/\u0661", "a/1/2"]
)
def test_strings_that_are_no_desired_version_are_invalid_argument(version: str) -> None:
    assert code_of(DesiredVersion.parse, version) is Code.INVALID_ARGUMENT
