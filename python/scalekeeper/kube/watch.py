"""A Kubernetes watch as a stream of ``(type, object)`` pairs, the way lightkube's ``watch()`` gives it.

Decoding the newline-delimited JSON and turning in-band ``ERROR`` events and
transport failures into ``KubeApiError`` happens here, so that the cache above
sees neither aiohttp nor the wire format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping

import aiohttp

from scalekeeper.kube.client import JSON, KubeApiError, KubeClient


async def watch(
    kube: KubeClient, path: str, query: Mapping[str, str | int | bool], *, read_timeout: float
) -> AsyncIterator[tuple[str, JSON]]:
    """Yield ``(type, object)`` for each event (BOOKMARK included) until the server ends the watch.

    Raises ``KubeApiError`` for an ``ERROR`` event (410 Gone included: ``is_gone``),
    a malformed line and a broken connection; ``TimeoutError`` when the stream
    stayed silent for longer than ``read_timeout``.
    """
    response = await kube.stream(path, query, read_timeout=read_timeout)
    try:
        async for line in response.content:
            if line.strip():
                yield _decode(line)
    except TimeoutError:
        raise
    except aiohttp.ClientError as error:
        raise KubeApiError(0, "Unavailable", f"watch {path}: {error!r}") from error
    finally:
        response.release()


def _decode(line: bytes) -> tuple[str, JSON]:
    try:
        event = json.loads(line)
        event_type, obj = event["type"], event["object"]
    except (ValueError, KeyError, TypeError) as error:
        raise KubeApiError(0, "MalformedWatchEvent", f"{error!r}: {line[:200]!r}") from None
    if not isinstance(event_type, str) or not isinstance(obj, dict):
        raise KubeApiError(0, "MalformedWatchEvent", repr(line[:200]))
    if event_type == "ERROR":
        raise KubeApiError(int(obj.get("code") or 0), obj.get("reason", ""), obj.get("message", ""))
    return event_type, obj
