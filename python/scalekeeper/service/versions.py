"""The version SetReplicas' optimistic concurrency works on: that of the desired count, not of the object.

A DeploymentScale's resourceVersion changes on every write, the controller's
status updates included, so a caller holding one would see it go stale within
milliseconds of its own write. What a caller means by "only if nobody changed
it since I read it" is the desired count, which lives in ``spec``. So the
version is the object's ``uid`` (a deleted and re-created object is another
object) and ``metadata.generation``, which the apiserver bumps on every change
of ``spec`` and never on status or metadata writes. Together they name one
state of the spec exactly, and they only grow, so a version cannot come back.

To clients the version is opaque: ``<uid>/<generation>``. The empty string is
the version of an unmanaged Deployment (no DeploymentScale), so a Get that
answered "" followed by a Set expecting "" means "only if still unmanaged".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scalekeeper.cache.projections import ScaleView
from scalekeeper.errors import Code, ServiceError

# Kubernetes UIDs are UUIDs; accept any such token rather than one textual form.
_VERSION = re.compile(r"(?P<uid>[0-9A-Za-z-]{1,64})/(?P<generation>[0-9]{1,19})")


@dataclass(frozen=True)
class DesiredVersion:
    uid: str
    generation: int

    @classmethod
    def of(cls, scale: ScaleView | None) -> DesiredVersion:
        return NOT_MANAGED if scale is None else cls(scale.uid, scale.generation)

    @classmethod
    def parse(cls, value: str) -> DesiredVersion:
        """A version from a request; INVALID_ARGUMENT for anything scalekeeper never hands out."""
        if value == "":
            return NOT_MANAGED
        match = _VERSION.fullmatch(value)
        if match is None:
            shown = repr(value[:64] + ("..." if len(value) > 64 else ""))
            raise ServiceError(
                Code.INVALID_ARGUMENT,
                f"expected_desired_version {shown} is not a desired_version; use the one GetReplicas, "
                "ListDeployments or SetReplicas returned (it is not the DeploymentScale's resourceVersion)",
            )
        return cls(match["uid"], int(match["generation"]))

    def __str__(self) -> str:
        return f"{self.uid}/{self.generation}" if self.uid else ""


NOT_MANAGED = DesiredVersion("", 0)


def desired_version(scale: ScaleView | None) -> str:
    """``str(DesiredVersion.of(scale))`` without the object: list replies build one per Deployment."""
    return f"{scale.uid}/{scale.generation}" if scale is not None else ""
