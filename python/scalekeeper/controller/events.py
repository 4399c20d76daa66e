"""Kubernetes Events (events.k8s.io/v1) about DeploymentScales, for `kubectl describe` and `kubectl events`.

Events are a courtesy to humans, not state: recording one is best effort and
never fails or retries a sync (a sync retried because an Event could not be
written would scale the Deployment again, or worse, loop).
"""

from __future__ import annotations

import datetime
import logging
import time

from scalekeeper.cache.projections import ScaleView
from scalekeeper.kube.client import KubeApiError, KubeClient
from scalekeeper.kube.resources import DEPLOYMENT_SCALES, EVENTS

REPORTING_CONTROLLER = "scalekeeper.dev/controller"

log = logging.getLogger(__name__)


class EventReason:
    SCALED = "Scaled"  # the desired count was applied to the Deployment
    DRIFT_REVERTED = "DriftReverted"  # someone else changed the Deployment; scalekeeper put it back
    CONFLICT_WITH_FIELD_MANAGER = "ConflictWithFieldManager"  # Warning: a fight began (controller/fights.py)


def _micro_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    def __init__(self, kube: KubeClient, *, instance: str, timeout: float = 5.0) -> None:
        self._kube = kube
        # reportingInstance is limited to 128 characters by validation.
        self._instance = instance[:128]
        self._timeout = timeout

    async def record(self, regarding: ScaleView, *, reason: str, action: str, note: str, warning: bool = False) -> bool:
        """Create one Event about ``regarding``; False (and a log line) if the apiserver refused it."""
        now = datetime.datetime.now(datetime.UTC)
        # client-go's naming: unique per object and instant, within the 253-character limit.
        name = f"{regarding.name[:235]}.{time.time_ns():x}"
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": regarding.namespace},
            "eventTime": _micro_time(now),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance,
            "action": action,
            "reason": reason,
            "type": "Warning" if warning else "Normal",
            "note": note[:1024],
            "regarding": {
                "apiVersion": DEPLOYMENT_SCALES.api_version,
                "kind": DEPLOYMENT_SCALES.kind,
                "namespace": regarding.namespace,
                "name": regarding.name,
                "resourceVersion": regarding.resource_version,
            },
        }
        try:
            await self._kube.request("POST", EVENTS.path(regarding.namespace), body=body, timeout=self._timeout)
        except KubeApiError as error:
            log.warning(
                "recording event failed",
                extra={
                    "dscale": f"{regarding.namespace}/{regarding.name}",
                    "reason": reason,
                    "error": str(error),
                },
            )
            return False
        return True
