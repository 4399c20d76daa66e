"""Section 2: reads never reach the apiserver, counted by the apiserver itself.

``apiserver_request_total`` (its /metrics, as admin) for the resources the
server caches, before and after 8,000 GetReplicas and 2,000 ListDeployments.
"""

from __future__ import annotations

import asyncio

from scalekeeper_dev.bench_env import Scalekeeper, apiserver_requests
from scalekeeper_dev.bench_load import Ghz
from scalekeeper_dev.bench_report import SMALL_NAMESPACE, Results, Target, get_messages, ghz_run, log, table
from scalekeeper_dev.controlplane import ControlPlane


async def measure(results: Results, plane: ControlPlane, ghz: Ghz, server: Scalekeeper) -> None:
    log("2. apiserver requests caused by 10,000 reads")
    before = await asyncio.to_thread(apiserver_requests, plane)
    gets = await ghz_run(
        ghz, server.target, "GetReplicas", get_messages(), concurrency=16, total=8000, data_name="get-100"
    )
    lists = await ghz_run(
        ghz,
        server.target,
        "ListDeployments",
        [{"namespace": SMALL_NAMESPACE, "page_size": 100}, {"page_size": 100}],
        concurrency=16,
        total=2000,
        data_name="list-mixed",
    )
    after = await asyncio.to_thread(apiserver_requests, plane)
    results.reads_for_delta = gets.statuses.get("OK", 0) + lists.statuses.get("OK", 0)
    results.apiserver_delta = {
        key: after.get(key, 0.0) - before.get(key, 0.0)
        for key in sorted(set(before) | set(after))
        if after.get(key, 0.0) - before.get(key, 0.0)
    }


def targets(results: Results) -> list[Target]:
    if not results.reads_for_delta:
        return []
    total = sum(results.apiserver_delta.values())
    return [
        Target(f"apiserver requests for {results.reads_for_delta:,} reads", "0", f"{total:.0f}, every verb", total == 0)
    ]


def render(results: Results) -> list[str]:
    out = [
        "",
        "## 2. apiserver requests caused by reads",
        "",
        f"`apiserver_request_total` (the apiserver's /metrics, as admin) for resources "
        f"deployments, deploymentscales and horizontalpodautoscalers, before and after {results.reads_for_delta:,} "
        "read RPCs (8,000 GetReplicas, 2,000 ListDeployments).",
        "",
    ]
    if results.apiserver_delta:
        out += table(
            ["resource", "verb", "delta"], [[r, v, f"{d:.0f}"] for (r, v), d in results.apiserver_delta.items()]
        )
        out += ["", "WATCH is counted when a watch ends: the server's reflectors renew theirs on their own schedule."]
    else:
        out.append("Delta: **0** requests, every verb.")
    return out
