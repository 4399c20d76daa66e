"""Which cache events make the controller sync which keys (real Stores; the sync itself is recorded, not run)."""

from __future__ import annotations

import asyncio
from typing import Any

from scalekeeper.cache.projections import DeploymentView, HpaView, Key, ScaleView
from scalekeeper.cache.store import EventType, Store
from scalekeeper.controller import Controller


class StoresOnly:
    """The three stores of a ClusterCache, already 'synced'; no apiserver behind them."""

    def __init__(self) -> None:
        self.deployments: Store[DeploymentView] = Store("deployments")
        self.scales: Store[ScaleView] = Store("deploymentscales")
        self.hpas: Store[HpaView] = Store("horizontalpodautoscalers")
        self.synced = True

    async def wait_synced(self) -> None:
        return None

    def hpa_targeting(self, key: Key) -> HpaView | None:
        return next((h for h in self.hpas.values() if (h.namespace, h.target_deployment) == key), None)


def scale(name: str, desired: int = 1) -> ScaleView:
    return ScaleView("ns", name, f"uid-{name}", "1", 1, desired, 0, 0, 0, ())


def deployment(name: str, replicas: int = 1, rv: str = "1") -> DeploymentView:
    return DeploymentView("ns", name, rv, replicas, 0, 0)


async def started(cache: StoresOnly) -> tuple[Controller, list[Key]]:
    controller = Controller(None, cache, workers=2)  # type: ignore[arg-type]
    synced: list[Key] = []

    async def record(key: Key) -> None:
        synced.append(key)

    controller.reconciler.sync = record  # type: ignore[method-assign]
    await controller.start()
    return controller, synced


async def settle(controller: Controller) -> None:
    async with asyncio.timeout(5):
        while True:
            queue = controller.queue
            assert queue is not None
            if len(queue) == 0 and queue.processing == 0:
                return
            await asyncio.sleep(0.001)


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_existing_scales_are_synced_once_when_leading_starts() -> None:
    async def scenario() -> None:
        cache = StoresOnly()
        cache.scales.apply(EventType.ADDED, scale("a"))
        cache.scales.apply(EventType.ADDED, scale("b"))
        controller, synced = await started(cache)
        await settle(controller)
        assert sorted(synced) == [("ns", "a"), ("ns", "b")]
        await controller.stop()
        assert controller.queue is None
        assert not controller.is_leader

    run(scenario())


def test_scale_deployment_and_hpa_events_enqueue_the_right_keys() -> None:
    async def scenario() -> None:
        cache = StoresOnly()
        controller, synced = await started(cache)
        await settle(controller)

        cache.scales.apply(EventType.ADDED, scale("web"))
        await settle(controller)
        assert synced == [("ns", "web")]

        synced.clear()
        cache.deployments.apply(EventType.ADDED, deployment("web"))
        cache.deployments.apply(EventType.ADDED, deployment("unmanaged"))  # no DeploymentScale: ignored
        await settle(controller)
        assert synced == [("ns", "web")]

        synced.clear()
        cache.hpas.apply(EventType.ADDED, HpaView("ns", "h", "1", "web"))
        await settle(controller)
        assert synced == [("ns", "web")]

        synced.clear()
        # Retargeted: both the freed and the claimed Deployment are synced.
        cache.hpas.apply(EventType.MODIFIED, HpaView("ns", "h", "2", "other"))
        await settle(controller)
        assert sorted(synced) == [("ns", "other"), ("ns", "web")]

        synced.clear()
        cache.scales.apply(EventType.DELETED, scale("web"))
        await settle(controller)
        assert synced == [("ns", "web")]  # the sync sees it gone and stops managing

        await controller.stop()
        synced.clear()
        cache.scales.apply(EventType.ADDED, scale("after-stop"))
        await asyncio.sleep(0)
        assert synced == []

    run(scenario())


def test_a_crashing_sync_is_retried_with_backoff_and_does_not_kill_the_worker() -> None:
    async def scenario() -> None:
        cache = StoresOnly()
        controller = Controller(None, cache, workers=1, backoff_base=0.001, backoff_max=0.01)  # type: ignore[arg-type]
        attempts: list[Key] = []

        async def flaky(key: Key) -> None:
            attempts.append(key)
            if len(attempts) < 3:
                raise RuntimeError("bug")

        controller.reconciler.sync = flaky  # type: ignore[method-assign]
        await controller.start()
        cache.scales.apply(EventType.ADDED, scale("web"))
        async with asyncio.timeout(5):
            while True:
                if len(attempts) >= 3:
                    break
                await asyncio.sleep(0.001)
        await settle(controller)
        assert controller.queue is not None
        assert controller.queue.num_requeues(("ns", "web")) == 0  # forgotten after the success
        cache.scales.apply(EventType.ADDED, scale("next"))
        await settle(controller)
        assert attempts[-1] == ("ns", "next")
        await controller.stop()

    run(scenario())
