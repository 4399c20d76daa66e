"""Opaque page tokens for ListDeployments.

A token records the last key of the page it ends and the namespace filter it
was issued for. Paging by key rather than by offset keeps pages stable while
Deployments come and go: nothing is skipped or repeated that existed
throughout. The token is opaque to callers, but not secret.
"""

from __future__ import annotations

import base64
import binascii
import json

from scalekeeper.cache.projections import Key
from scalekeeper.errors import Code, ServiceError

_VERSION = 1


def encode(namespace: str, last: Key) -> str:
    payload = json.dumps({"v": _VERSION, "ns": namespace, "after": list(last)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode(token: str, namespace: str) -> Key | None:
    """The key to continue after, or None for the first page."""
    if not token:
        return None
    bad = ServiceError(Code.INVALID_ARGUMENT, "page_token is not a token from a previous ListDeployments response")
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, token_namespace, (after_namespace, after_name) = (
            payload["v"],
            payload["ns"],
            payload["after"],
        )
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError, RecursionError) as error:
        # RecursionError: JSON nested deeper than the parser's stack, which no token of ours is.
        raise bad from error
    if version != _VERSION or not all(isinstance(v, str) for v in (token_namespace, after_namespace, after_name)):
        raise bad
    if token_namespace != namespace:
        raise ServiceError(
            Code.INVALID_ARGUMENT,
            f"page_token was issued for namespace {token_namespace!r}; repeat the request with that namespace",
        )
    return after_namespace, after_name
