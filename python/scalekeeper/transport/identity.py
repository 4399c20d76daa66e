"""Who is calling: identity names from a verified client certificate, as each transport exposes it.

Both transports must derive the same names from the same certificate, or a
role granted on one port would not hold on the other: URI SANs, DNS SANs and
the subject CN, never a header.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scalekeeper.service.authz import Identity

# Few distinct clients call a server, and each call would otherwise rebuild the
# same names and Identity (a measurable share of a read's CPU): remember them,
# keyed by the certificate fields they come from, never by the connection.
_CACHED_IDENTITIES = 1024


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def grpc_identity(auth: Mapping[str, Sequence[bytes]]) -> Identity:
    """The caller of a gRPC call, from ``ServicerContext.auth_context()``."""
    # Spelled out rather than a loop over the keys: this runs on every call.
    return _grpc_identity(
        tuple(auth.get("peer_uri", ())), tuple(auth.get("peer_dns", ())), tuple(auth.get("x509_common_name", ()))
    )


@functools.lru_cache(maxsize=_CACHED_IDENTITIES)
def _grpc_identity(uris: tuple[bytes, ...], dns_names: tuple[bytes, ...], common_names: tuple[bytes, ...]) -> Identity:
    return Identity(
        names=names_from_grpc_auth_context({"peer_uri": uris, "peer_dns": dns_names, "x509_common_name": common_names})
    )


def http_identity(peercert: Mapping[str, Any] | None) -> Identity:
    """The caller of an HTTP request, from ``SSLObject.getpeercert()``."""
    if not peercert:
        return _http_identity((), ())
    return _http_identity(peercert.get("subjectAltName", ()), peercert.get("subject", ()))


@functools.lru_cache(maxsize=_CACHED_IDENTITIES)
def _http_identity(sans: tuple[Any, ...], subject: tuple[Any, ...]) -> Identity:
    return Identity(names=names_from_peercert({"subjectAltName": sans, "subject": subject}))


def names_from_grpc_auth_context(auth: Mapping[str, Sequence[bytes]]) -> frozenset[str]:
    """Identity names from ``ServicerContext.auth_context()`` of a verified mTLS peer.

    grpc fills ``peer_uri``/``peer_dns`` with the URI/DNS SANs (IP and e-mail
    SANs only appear in ``x509_subject_alternative_name``, and are not
    identities here) and ``x509_common_name`` with the subject CN.
    """
    names: set[str] = set()
    for key in ("peer_uri", "peer_dns", "x509_common_name"):
        names.update(_text(value) for value in auth.get(key, ()))
    return frozenset(name for name in names if name)


def names_from_peercert(peercert: Mapping[str, Any] | None) -> frozenset[str]:
    """Identity names from ``SSLObject.getpeercert()`` (a verified certificate, decoded by Python)."""
    if not peercert:
        return frozenset()
    names: set[str] = set()
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("URI", "DNS"):
            names.add(value)
    subject: Iterable[Iterable[tuple[str, str]]] = peercert.get("subject", ())
    for rdn in subject:
        for attribute, value in rdn:
            if attribute == "commonName":
                names.add(value)
    return frozenset(name for name in names if name)
