"""The HTTP mirror's GetReplicas under load (part of section 1), from a separate client process.

ghz speaks only gRPC, so the load comes from this module run as a child
process (``python -m scalekeeper_dev.bench_http``): ``--concurrency``
keep-alive HTTPS connections with one request in flight each, round-robin
over the 100 Deployments, for ``--seconds``. Only the server's CPU per OK
call is a target; the client's own speed (Python) bounds req/s, so that
figure says little about the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections import Counter

import aiohttp

from scalekeeper_dev.bench_env import Certs, Scalekeeper, cpu_seconds
from scalekeeper_dev.bench_latency import percentile
from scalekeeper_dev.bench_load import LoadResult
from scalekeeper_dev.bench_report import SMALL_NAMES, SMALL_NAMESPACE, Results, log

CONCURRENCY = 16


async def measure(results: Results, server: Scalekeeper, certs: Certs, *, seconds: float, repeat: int) -> None:
    log(f"1. HTTP GetReplicas at concurrency {CONCURRENCY}")
    cert, key = certs.client("reader")
    argv = [
        sys.executable,
        "-m",
        "scalekeeper_dev.bench_http",
        f"--port={server.http_port}",
        f"--ca={certs.ca_file}",
        f"--cert={cert}",
        f"--key={key}",
        f"--concurrency={CONCURRENCY}",
    ]
    await _run([*argv, "--seconds=2"], server.pid)  # warm-up
    runs = [await _run([*argv, f"--seconds={seconds}"], server.pid) for _ in range(repeat)]
    fastest = max(runs, key=lambda r: r.rps)
    results.http_get = LoadResult(
        fastest.rps, fastest.p50_ms, fastest.p99_ms, fastest.count, fastest.statuses, min(r.server_cpu_us for r in runs)
    )


async def _run(argv: list[str], server_pid: int) -> LoadResult:
    before = cpu_seconds(server_pid)
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    output, _ = await process.communicate()
    used = cpu_seconds(server_pid) - before
    report = json.loads(output)
    ok = report["statuses"].get("200", 0)
    statuses = {("OK" if code == "200" else code): n for code, n in report["statuses"].items()}
    return LoadResult(
        report["rps"],
        report["p50_ms"],
        report["p99_ms"],
        report["count"],
        statuses,
        used * 1e6 / ok if ok else float("nan"),
    )


async def _load(port: int, context: ssl.SSLContext, concurrency: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    paths = [f"/v1/namespaces/{SMALL_NAMESPACE}/deployments/{name}/replicas" for name in SMALL_NAMES]
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(f"https://localhost:{port}", connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.get(paths[i % len(paths)]) as response:
                        await response.read()
                        codes[str(response.status)] += 1
                except aiohttp.ClientError as error:
                    codes[type(error).__name__] += 1
                latencies.append((time.perf_counter() - started) * 1000)
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "count": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "statuses": dict(codes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scalekeeper_dev.bench_http", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    print(json.dumps(asyncio.run(_load(args.port, context, args.concurrency, args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
