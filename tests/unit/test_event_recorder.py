"""Events from the reconcile path: queued, never awaited, repeats aggregated into one series."""

from __future__ import annotations

from typing import Any

from scalekeeper import metrics
from scalekeeper.cache.projections import ScaleView
from scalekeeper.controller.events import EventReason, EventRecorder


class RecordingKube:
    """Records what would be sent; the recorder is tested up to the request it builds."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []

    async def request(self, method: str, path: str, *, body: Any, query: Any, **_: Any) -> dict[str, Any]:
        self.requests.append((method, path, body, query))
        return {}


def scale(name: str = "web") -> ScaleView:
    return ScaleView(
        namespace="shop",
        name=name,
        uid="u",
        resource_version="7",
        generation=1,
        desired_replicas=3,
        observed_generation=1,
        status_replicas=3,
        status_ready_replicas=3,
        conditions=(),
    )


async def test_repeats_become_one_event_whose_series_counts_them() -> None:
    kube = RecordingKube()
    recorder = EventRecorder(kube, instance="pod-a")  # type: ignore[arg-type]
    for _ in range(3):
        recorder.record(scale(), reason=EventReason.SCALED, action="Scale", note="Scaled from 1 to 3")
    recorder.record(scale("api"), reason=EventReason.SCALED, action="Scale", note="Scaled from 1 to 3")
    assert recorder._queue.qsize() == 2  # one per series, not one per call
    for _ in range(2):
        await recorder._write(recorder._queue.get_nowait())
    methods = [
        (method, body.get("metadata", {}).get("name", "")[:3] or path.rsplit("/", 1)[1][:3])
        for method, path, body, _ in kube.requests
    ]
    # web: created once, then its series count patched; api: created once.
    assert methods == [("POST", "web"), ("PATCH", "web"), ("POST", "api")]
    assert all(query == {"fieldManager": "scalekeeper"} for *_, query in kube.requests)
    assert kube.requests[1][2]["series"]["count"] == 3
    assert kube.requests[0][1] == "/apis/events.k8s.io/v1/namespaces/shop/events"


async def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    recorder = EventRecorder(RecordingKube(), instance="pod-a", queue_size=1)  # type: ignore[arg-type]
    dropped = metrics.EVENTS_DROPPED.labels("queue_full")._value.get()
    recorder.record(scale("one"), reason=EventReason.SCALED, action="Scale", note="a")
    recorder.record(scale("two"), reason=EventReason.SCALED, action="Scale", note="b")
    assert recorder._queue.qsize() == 1
    assert metrics.EVENTS_DROPPED.labels("queue_full")._value.get() == dropped + 1
