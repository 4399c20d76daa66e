from __future__ import annotations

import pytest

from scalekeeper.cache.projections import DeploymentView
from scalekeeper.cache.store import EventType, HandlerFailed, Store


def deployment(namespace: str, name: str, replicas: int = 1, version: str = "1") -> DeploymentView:
    return DeploymentView(namespace, name, version, replicas, 0, 0)


def recording_store() -> tuple[Store[DeploymentView], list[tuple[EventType, str]]]:
    store: Store[DeploymentView] = Store("deployments")
    seen: list[tuple[EventType, str]] = []
    store.add_handler(lambda event, old, new: seen.append((event, (new or old).name)))
    return store, seen


def test_apply_notifies_added_modified_deleted_and_skips_no_op_updates() -> None:
    store, seen = recording_store()
    store.apply(EventType.ADDED, deployment("a", "web"))
    store.apply(EventType.MODIFIED, deployment("a", "web"))  # identical: no event
    store.apply(EventType.MODIFIED, deployment("a", "web", replicas=3, version="2"))
    store.apply(EventType.DELETED, deployment("a", "web"))
    store.apply(EventType.DELETED, deployment("a", "web"))  # already gone: no event
    assert seen == [(EventType.ADDED, "web"), (EventType.MODIFIED, "web"), (EventType.DELETED, "web")]
    assert len(store) == 0


def test_replace_deletes_what_vanished_within_its_namespace_only() -> None:
    store, seen = recording_store()
    for view in (deployment("a", "one"), deployment("a", "two"), deployment("b", "three")):
        store.apply(EventType.ADDED, view)
    seen.clear()
    store.replace([deployment("a", "two", replicas=5, version="9")], namespace="a")
    assert seen == [(EventType.DELETED, "one"), (EventType.MODIFIED, "two")]
    assert store.get(("b", "three")) is not None


def test_replace_without_namespace_covers_the_whole_store() -> None:
    store, _ = recording_store()
    store.apply(EventType.ADDED, deployment("a", "one"))
    store.apply(EventType.ADDED, deployment("b", "two"))
    store.replace([deployment("b", "two")])
    assert [v.key for v in store.values()] == [("b", "two")]


def test_page_orders_by_namespace_then_name_and_continues_after_a_key() -> None:
    store, _ = recording_store()
    for namespace, name in [("b", "x"), ("a", "z"), ("a", "m"), ("c", "a"), ("b", "a")]:
        store.apply(EventType.ADDED, deployment(namespace, name))
    first, more = store.page("", None, 2)
    assert [v.key for v in first] == [("a", "m"), ("a", "z")]
    assert more
    second, more = store.page("", first[-1].key, 2)
    assert [v.key for v in second] == [("b", "a"), ("b", "x")]
    assert more
    last, more = store.page("", second[-1].key, 2)
    assert [v.key for v in last] == [("c", "a")]
    assert not more


def test_page_within_a_namespace_stops_at_its_end() -> None:
    store, _ = recording_store()
    for namespace, name in [("a", "one"), ("b", "one"), ("b", "two"), ("c", "one")]:
        store.apply(EventType.ADDED, deployment(namespace, name))
    page, more = store.page("b", None, 10)
    assert [v.key for v in page] == [("b", "one"), ("b", "two")]
    assert not more
    page, more = store.page("b", ("b", "one"), 1)
    assert [v.key for v in page] == [("b", "two")]
    assert not more
    assert store.page("zzz", None, 10) == ([], False)


def test_page_is_stable_when_the_last_key_was_deleted() -> None:
    store, _ = recording_store()
    for name in ("a", "b", "c"):
        store.apply(EventType.ADDED, deployment("ns", name))
    first, _ = store.page("ns", None, 1)
    store.apply(EventType.DELETED, first[0])
    rest, more = store.page("ns", first[-1].key, 10)
    assert [v.name for v in rest] == ["b", "c"]
    assert not more


def test_removed_handler_is_not_called() -> None:
    store: Store[DeploymentView] = Store("deployments")
    seen: list[EventType] = []
    remove = store.add_handler(lambda event, old, new: seen.append(event))
    remove()
    store.apply(EventType.ADDED, deployment("a", "b"))
    assert seen == []


def test_a_raising_handler_is_isolated_then_reported() -> None:
    store, seen = recording_store()
    calls: list[str] = []

    def broken(_event: EventType, _old: DeploymentView | None, new: DeploymentView | None) -> None:
        raise RuntimeError("bug")

    store._handlers.insert(0, broken)
    store.add_handler(lambda _e, _o, new: calls.append(new.name if new else ""))
    with pytest.raises(HandlerFailed, match="bug"):
        store.apply(EventType.ADDED, deployment("a", "web"))
    # The change was stored and every other handler still ran.
    assert store.get(("a", "web")) is not None
    assert seen == [(EventType.ADDED, "web")]
    assert calls == ["web"]


def test_pages_walk_a_large_store_in_key_order_without_gaps() -> None:
    store: Store[DeploymentView] = Store("deployments")
    store.replace(deployment(f"ns-{i % 7}", f"d-{i:05d}") for i in range(20_000))
    keys, after = [], None
    while True:
        page, more = store.page("ns-3", after, 1000)
        keys.extend(view.key for view in page)
        if not more:
            break
        after = page[-1].key
    assert keys == sorted(k for k in store._items if k[0] == "ns-3")
