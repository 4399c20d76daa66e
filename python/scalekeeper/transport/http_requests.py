"""Turning HTTP requests into the service's messages, strictly.

The HTTP mirror takes exactly what the API documents, and refuses the rest
with INVALID_ARGUMENT before anything runs:

- **Bodies** are read whole, whatever the framing (Content-Length or chunked,
  in any number of TCP segments or TLS records), up to ``MAX_BODY_BYTES``;
  more is RESOURCE_EXHAUSTED (413). A body that is not complete within
  ``BODY_READ_SECONDS`` is INVALID_ARGUMENT.
- **JSON** is strict: no ``NaN``/``Infinity``, no duplicate keys (which of two
  ``replicas`` would count?), no number literal longer than any field takes,
  no nesting that would exhaust the parser's stack.
- **The SetReplicas body** is ``{"replicas": <JSON integer>}`` plus an optional
  ``expectedDesiredVersion`` string and an optional ``takeOwnership`` boolean
  (protobuf JSON's ``expected_desired_version``/``take_ownership`` spellings
  too). Protobuf JSON's leniencies are refused on purpose: it reads ``null``
  as "the default", i.e. 0 replicas, and accepts ``"3"`` and ``3.0``;
  for a call that scales Deployments, a body that is not plainly a count must
  change nothing.
- **Query parameters** are only the route's own, each at most once; integers
  are ASCII decimals within int32 (``int()`` alone would take ``" 1_0 "``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Collection
from typing import Any

from aiohttp import web

from scalekeeper.errors import Code, ServiceError
from scalekeeper.transport.failures import invalid_argument
from scalekeeper.v1 import replicas_pb2 as pb

MAX_BODY_BYTES = 64 * 1024
# A body of at most 64 KiB that takes longer than this is not coming.
BODY_READ_SECONDS = 10.0
# Longer integer literals than int32 ever needs are refused before Python converts them.
_MAX_INTEGER_DIGITS = 20
_INT32 = range(-(2**31), 2**31)
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_VERSION_FIELDS = ("expectedDesiredVersion", "expected_desired_version")
_OWNERSHIP_FIELDS = ("takeOwnership", "take_ownership")
_SET_FIELDS = frozenset({"replicas", *_VERSION_FIELDS, *_OWNERSHIP_FIELDS})


async def read_body(request: web.Request) -> bytes:
    """The whole body, however it was framed; RESOURCE_EXHAUSTED past ``MAX_BODY_BYTES``."""
    try:
        # Reads to the end of the body (Content-Length or chunked), bounded by client_max_size and by time:
        # aiohttp never fails the read for a malformed chunk that arrives after the headers, and a stalled
        # client would otherwise hold the handler for as long as it keeps the connection open.
        async with asyncio.timeout(BODY_READ_SECONDS):
            return await request.read()
    except TimeoutError:
        raise invalid_argument(
            f"the body did not arrive within {BODY_READ_SECONDS:.0f}s (a stalled client, or malformed chunks)"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise ServiceError(Code.RESOURCE_EXHAUSTED, f"the body is larger than {MAX_BODY_BYTES} bytes") from None
    except web.RequestPayloadError as error:  # a malformed chunk, a body shorter than its Content-Length
        raise invalid_argument(f"the body is not well-framed: {error}") from None


def _integer(literal: str) -> int:
    if len(literal.lstrip("-")) > _MAX_INTEGER_DIGITS:
        raise ValueError(f"the number {literal[:20]}... has more digits than any field takes")
    return int(literal)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key[:40]!r} appears twice")
        result[key] = value
    return result


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_int=_integer, parse_constant=_constant, object_pairs_hook=_object)
    except RecursionError:
        raise invalid_argument("the body is not valid JSON: it is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise invalid_argument(f"the body is not valid JSON: {error}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def set_request(namespace: str, name: str, body: Any) -> pb.SetReplicasRequest:
    """SetReplicasRequest from the path (which names the Deployment) and a parsed JSON body."""
    if not isinstance(body, dict):
        raise invalid_argument('the body must be a JSON object like {"replicas": 3}')
    unknown = sorted(set(body) - _SET_FIELDS)
    if unknown:
        raise invalid_argument(
            f"unknown field(s) {', '.join(unknown)}; expected replicas, expectedDesiredVersion, takeOwnership"
        )
    if "replicas" not in body:
        raise invalid_argument('replicas is required, e.g. {"replicas": 3}')
    replicas = body["replicas"]
    if type(replicas) is not int:
        raise invalid_argument(f"replicas must be a JSON integer, got {_kind(replicas)}")
    if replicas not in _INT32:
        raise invalid_argument(f"replicas must be a 32-bit integer, got {replicas}")
    request = pb.SetReplicasRequest(namespace=namespace, name=name, replicas=replicas)
    version = _optional(body, _VERSION_FIELDS)
    if version is not None:
        field, expected = version
        if not isinstance(expected, str):
            raise invalid_argument(f"{field} must be a string, got {_kind(expected)}; leave it out for last-write-wins")
        request.expected_desired_version = expected
    ownership = _optional(body, _OWNERSHIP_FIELDS)
    if ownership is not None:
        field, take = ownership
        if not isinstance(take, bool):
            raise invalid_argument(f"{field} must be true or false, got {_kind(take)}")
        request.take_ownership = take
    return request


def _optional(body: dict[str, Any], spellings: tuple[str, str]) -> tuple[str, Any] | None:
    """(spelling, value) of an optional field that protobuf JSON accepts in two spellings."""
    given = [field for field in spellings if field in body]
    if len(given) > 1:
        raise invalid_argument(f"give {spellings[0]} once, in one spelling")
    return (given[0], body[given[0]]) if given else None


def query(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The query parameters, refusing unknown and repeated ones."""
    parameters: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            expected = ", ".join(sorted(allowed)) or "none"
            raise invalid_argument(f"unknown query parameter {key[:40]!r}; this route takes: {expected}")
        if key in parameters:
            raise invalid_argument(f"query parameter {key} is given more than once")
        parameters[key] = value
    return parameters


def int32_parameter(parameters: dict[str, str], name: str) -> int:
    """An optional integer query parameter (absent or empty: 0)."""
    raw = parameters.get(name, "")
    if raw == "":
        return 0
    if not _DECIMAL.fullmatch(raw):
        raise invalid_argument(f"{name} must be a decimal integer, got {raw[:40]!r}")
    value = int(raw)
    if value not in _INT32:
        raise invalid_argument(f"{name} must be a 32-bit integer, got {raw}")
    return value
