"""Authorization by the verified client-certificate identity.

The transports extract the identity from the TLS layer, after the handshake
verified the chain against the configured CA; here it is only matched against
the two roles. A client is whoever any of its URI/DNS SANs or its CN names.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from scalekeeper.errors import Code, ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    names: frozenset[str]

    @functools.cached_property
    def label(self) -> str:
        """The one name the logs use: a URI SAN (SPIFFE-style) names a workload best; else any name, stably."""
        uris = sorted(name for name in self.names if "://" in name)
        return (uris or sorted(self.names) or ["<anonymous>"])[0]

    def __str__(self) -> str:
        return self.label


class Permission(enum.Enum):
    READ = "read"
    WRITE = "write"


class Authorizer:
    def __init__(self, readers: Iterable[str], writers: Iterable[str]) -> None:
        self._writers = frozenset(writers)
        # Writers may read too.
        self._readers = frozenset(readers) | self._writers

    def authorize(self, identity: Identity, permission: Permission, method: str) -> None:
        allowed = self._writers if permission is Permission.WRITE else self._readers
        if not identity.names.isdisjoint(allowed):
            return
        log.warning(
            "permission denied",
            extra={"identity": str(identity), "names": sorted(identity.names), "method": method},
        )
        raise ServiceError(
            Code.PERMISSION_DENIED,
            f"client {identity} may not {permission.value} ({method}); ask an operator to add it to the "
            f"{'writers' if permission is Permission.WRITE else 'readers'}",
        )
