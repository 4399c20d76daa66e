"""Who is calling: identity names from a verified client certificate, as each transport exposes it.

Both transports must derive the same names from the same certificate, or a
role granted on one port would not hold on the other: URI SANs, DNS SANs and
the subject CN, never a header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


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
