"""The HTTP mirror's strict reading of bodies and query parameters (``transport.http_requests``)."""

from __future__ import annotations

import pytest

from scalekeeper.errors import Code, ServiceError
from scalekeeper.transport.http_requests import int32_parameter, parse_json, set_request


def refused(call: object, *args: object) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.code is Code.INVALID_ARGUMENT
    return caught.value


def test_set_request_from_path_and_body() -> None:
    request = set_request("prod", "web", {"replicas": 3, "expectedDesiredVersion": "u/4"})
    assert (request.namespace, request.name, request.replicas) == ("prod", "web", 3)
    assert request.expected_desired_version == "u/4"
    assert set_request("prod", "web", {"replicas": 3, "expected_desired_version": "u/4"}).HasField(
        "expected_desired_version"
    )
    assert not set_request("prod", "web", {"replicas": 0}).HasField("expected_desired_version")
    assert set_request("prod", "web", {"replicas": 3, "takeOwnership": True}).take_ownership
    assert set_request("prod", "web", {"replicas": 3, "take_ownership": True}).take_ownership
    assert not set_request("prod", "web", {"replicas": 3, "takeOwnership": False}).take_ownership
    assert not set_request("prod", "web", {"replicas": 3}).take_ownership
    # The empty string is meaningful ("only if not managed yet") and must survive.
    assert set_request("prod", "web", {"replicas": 1, "expectedDesiredVersion": ""}).HasField(
        "expected_desired_version"
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([1], "JSON object"),
        ("3", "JSON object"),
        ({}, "required"),
        ({"replicas": None}, "got null"),  # protobuf JSON would read 0: scaled to zero by accident
        ({"replicas": "3"}, "got a string"),
        ({"replicas": 2.0}, "fraction"),
        ({"replicas": 2.5}, "fraction"),
        ({"replicas": True}, "boolean"),
        ({"replicas": [3]}, "array"),
        ({"replicas": 2**31}, "32-bit"),
        ({"replicas": -(2**31) - 1}, "32-bit"),
        ({"replicas": 1, "namespace": "other"}, "unknown field"),
        ({"replicas": 1, "expectedDesiredVersion": None}, "must be a string"),
        ({"replicas": 1, "expectedDesiredVersion": 7}, "must be a string"),
        ({"replicas": 1, "expectedDesiredVersion": "a/1", "expected_desired_version": "a/2"}, "once"),
        ({"replicas": 1, "takeOwnership": "true"}, "true or false, got a string"),
        ({"replicas": 1, "takeOwnership": None}, "true or false, got null"),
        ({"replicas": 1, "takeOwnership": 1}, "true or false"),
        ({"replicas": 1, "takeOwnership": True, "take_ownership": True}, "once"),
    ],
)
def test_set_request_refuses_what_is_not_plainly_a_count(body: object, says: str) -> None:
    assert says in refused(set_request, "prod", "web", body).message


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"replicas": ' + b"9" * 5000 + b"}", "more digits"),
        (b'{"replicas": NaN}', "NaN is not JSON"),
        (b'{"replicas": -Infinity}', "-Infinity is not JSON"),
        (b'{"replicas": 1, "replicas": 0}', "appears twice"),
    ],
)
def test_parse_json_refuses_extreme_or_ambiguous_json(raw: bytes, says: str) -> None:
    assert says in refused(parse_json, raw).message


def test_parse_json_keeps_ordinary_numbers() -> None:
    assert parse_json(b'{"replicas": -2147483648, "f": 1e400}') == {"replicas": -(2**31), "f": float("inf")}


@pytest.mark.parametrize("raw", ["2147483648", "-2147483649", "9" * 30, " 5", "1_0", "+5", "\u0661", "5.0", "ten"])
def test_int32_parameters_are_plain_decimals_within_int32(raw: str) -> None:
    refused(int32_parameter, {"page_size": raw}, "page_size")


@pytest.mark.parametrize(("raw", "value"), [("", 0), ("0", 0), ("-5", -5), ("2147483647", 2**31 - 1)])
def test_int32_parameters(raw: str, value: int) -> None:
    assert int32_parameter({"page_size": raw}, "page_size") == value
