"""``make bench``: scalekeeper's performance against its targets, written to docs/benchmarks.md.

Everything runs on this machine against the harness's own control plane
(etcd + kube-apiserver, started here and stopped at the end), so the numbers
say what one core of Python can do next to a real apiserver, not what a
cluster can. The load generators and the apiserver share the machine with
the server; the report says how many cores there were and how loaded the
machine was, and lists the exact commands.

Targets are reported, never asserted: a benchmark that fails a build on a
noisy machine gets ignored. Where a read-path target is missed, the server is
profiled with py-spy under the same load and the hottest functions go into
the report.

One module per scenario, in the report's order (``bench_report`` holds what
they share):
1. ``bench_reads`` (+ ``bench_http``): unary reads under ghz beside the bare
   grpc.aio server, server CPU per call; the HTTP mirror's GetReplicas.
2. ``bench_apiserver``: apiserver requests caused by 10,000 reads.
3-4. ``bench_changes``: watch propagation; reconcile and drift revert.
5. ``bench_scale``: 10,000 then 100,000 Deployments.
6. ``bench_watchers``: 1,000 WatchReplicas streams under 20 changes/s.
Profiles: ``bench_profile``.
"""

from __future__ import annotations

# Before grpc is imported (the in-process clients follow the server's TLS policy).
from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from scalekeeper.kube.client import KubeClient, connect  # noqa: E402
from scalekeeper_dev import (  # noqa: E402
    bench_apiserver,
    bench_changes,
    bench_http,
    bench_profile,
    bench_reads,
    bench_scale,
    bench_watchers,
    toolchain,
)
from scalekeeper_dev.bench_env import REPO, BareServer, Certs, Scalekeeper, describe_machine, rss_mib  # noqa: E402
from scalekeeper_dev.bench_load import Ghz  # noqa: E402
from scalekeeper_dev.bench_report import MB, SMALL_NAMES, SMALL_NAMESPACE, Results, Target, log, ms, table  # noqa: E402
from scalekeeper_dev.components import Components  # noqa: E402
from scalekeeper_dev.controlplane import ControlPlane  # noqa: E402
from scalekeeper_dev.crd import install_crd_on  # noqa: E402

# Rendered in this order; each contributes its section and its targets.
SECTIONS = (bench_reads, bench_apiserver, bench_changes, bench_scale, bench_watchers, bench_profile)


async def setup_small(kube: KubeClient) -> None:
    log("setup: namespaces and Deployments for sections 1-4")
    await bench_scale.create_namespace(kube, SMALL_NAMESPACE)
    await bench_scale.create_deployments(kube, SMALL_NAMESPACE, SMALL_NAMES)
    await bench_changes.setup(kube)


async def run(args: argparse.Namespace, plane: ControlPlane, workdir: Path, results: Results, ghz: Ghz) -> None:
    certs = ghz.certs
    kube = await connect(plane.kubeconfig)
    lease = f"bench-{secrets.token_hex(3)}"
    server_count = 0

    def make_server(label: str, *extra: str) -> Scalekeeper:
        nonlocal server_count
        server_count += 1
        server = Scalekeeper(
            plane.kubeconfig,
            certs,
            workdir / f"scalekeeper-{server_count}-{label}.log",
            (f"--lease-name={lease}", *extra),
        )
        results.server_argv = server.argv
        ghz.aliases[server.target] = "$SCALEKEEPER"
        return server.start()

    load = {"duration": args.duration, "repeat": args.repeat}
    try:
        await setup_small(kube)
        server = make_server("small")
        bare = BareServer(certs, workdir)
        results.bare_argv = bare.argv
        ghz.aliases[bare.target] = "$BARE"
        try:
            results.small_ready_s = server.wait_ready()
            bare.start()
            await bench_reads.measure(results, ghz, server, bare, **load)
        finally:
            bare.stop()
        try:
            seconds = float(args.duration.rstrip("s"))
            await bench_http.measure(results, server, certs, seconds=seconds, repeat=args.repeat)
            await bench_apiserver.measure(results, plane, ghz, server)
            if args.watchers:
                await bench_watchers.measure(
                    results, kube, ghz, server, workdir, streams=args.watchers, namespace_count=args.watcher_namespaces
                )
            if not args.skip_latency:
                await bench_changes.measure(results, kube, server, certs, args.changes)
            results.small_rss_mb = rss_mib(server.pid)[1] / MB
            await bench_profile.measure_missed(results, ghz, server, workdir)
        finally:
            server.stop()
        if args.scale_namespaces:
            await bench_scale.measure(
                results,
                kube,
                ghz,
                make_server,
                certs,
                namespace_counts=args.scale_namespaces,
                per_namespace=args.scale_per_namespace,
                **load,
            )
    finally:
        await kube.close()


def _shown(argv: list[str], workdir: Path) -> str:
    return shlex.join(argv).replace(str(workdir), "$WORKDIR").replace(sys.executable, "python")


# Figures measured by other commands (make test-delivery) live at the end of the
# report, under this heading; a new run keeps them instead of dropping them.
HAND_WRITTEN_HEADING = "\n## Delivery on a real node"


def _hand_written_tail(report: Path) -> str:
    old = report.read_text() if report.exists() else ""
    index = old.find(HAND_WRITTEN_HEADING)
    return "" if index < 0 else old[index:]


def render(results: Results, targets: list[Target], ghz: Ghz, invocation: str, workdir: Path) -> str:
    out: list[str] = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` ({invocation}) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
        f"in {results.elapsed_s / 60:.1f} minutes. Everything ran on one machine: the server (one Python process), "
        "the load generators (ghz limited to 1 CPU; the HTTP client), etcd and kube-apiserver. Targets are reported, "
        "never asserted.",
        "",
        "## Machine",
        "",
        *table(["", ""], [[k, v] for k, v in results.machine.items()]),
        f"| load average at end | {results.load_average_end} |",
        "",
        "## Targets",
        "",
        *table(
            ["target", "wanted", "measured", ""],
            [[t.what, t.wanted, t.measured, "met" if t.met else "**missed**"] for t in targets],
        ),
    ]
    for section in SECTIONS:
        out += section.render(results)
    if results.notes:
        out += ["", "## Notes", "", *[f"* {note}" for note in results.notes]]
    out += [
        "",
        "## Commands",
        "",
        "```sh",
        "# $WORKDIR: a temporary directory (certificates, logs, profiles; --workdir keeps it)",
        f"# server (sections 1-4 and 6; 5 starts others alike)\n{_shown(results.server_argv, workdir)}",
        f"# bare grpcio server\n{_shown(results.bare_argv, workdir)}",
        "# load: $SCALEKEEPER and $BARE are localhost:<port> of the two servers, $CERTS their certificates;",
        "# each data file is a JSON array of requests, sent round-robin:",
        *[f"#   {name}: {what}" for name, what in ghz.data_files.items()],
        *ghz.commands,
        "# HTTP GetReplicas: python -m scalekeeper_dev.bench_http --port=<HTTP port> --ca=... --cert=... --key=...",
        "```",
        "",
    ]
    return "\n".join(out)


def print_summary(results: Results, targets: list[Target]) -> None:
    print("\n== targets ==")
    for t in targets:
        print(f"  {'ok    ' if t.met else 'MISSED'} {t.what}: {t.measured} (wanted {t.wanted})")
    print("\n== unary reads (scalekeeper vs bare grpcio) ==")
    for (method, concurrency), (ours, bare) in results.load.items():
        print(
            f"  {method:16} c={concurrency:<3} {ours.rps:>8,.0f} req/s p99 {ms(ours.p99_ms):>9} "
            f"CPU {ours.server_cpu_us:>6,.0f} us | bare {bare.rps:>8,.0f} req/s CPU {bare.server_cpu_us:>6,.0f} us"
        )


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        directory = Path(path).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="scalekeeper-bench-"))
    ok = False
    try:
        yield directory
        ok = True
    finally:
        if ok:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"logs kept in {directory}", file=sys.stderr)


def _counts(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip() and int(part)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scalekeeper_dev.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"), help="the Markdown report")
    parser.add_argument("--duration", default="10s", help="each load run (sections 1, 5 and 6)")
    parser.add_argument("--repeat", type=int, default=3, help="load runs per measurement; the least disturbed counts")
    parser.add_argument("--changes", type=int, default=200, help="samples for sections 3 and 4")
    parser.add_argument(
        "--scale-namespaces", type=_counts, default=[100, 1000], help="section 5: comma-separated sizes (0 skips it)"
    )
    parser.add_argument("--scale-per-namespace", type=int, default=100)
    parser.add_argument("--watchers", type=int, default=1000, help="section 6: concurrent WatchReplicas (0 skips)")
    parser.add_argument("--watcher-namespaces", type=int, default=100, help="section 6: namespaces watched")
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sections 3 and 4 again with kube-controller-manager, kube-scheduler and KWOK",
    )
    parser.add_argument("--skip-latency", action="store_true", help="skip sections 3 and 4")
    parser.add_argument("--workdir", help="keep logs, certificates and profiles here (default: a temp dir)")
    args = parser.parse_args(argv)
    invocation = shlex.join(["python", "-m", "scalekeeper_dev.bench", *(argv if argv is not None else sys.argv[1:])])

    started = time.perf_counter()
    tools = {name: toolchain.ensure(name) for name in ("ghz", "etcd", "kube-apiserver")}
    results = Results(machine=describe_machine(tools["ghz"], tools["kube-apiserver"], tools["etcd"]))
    with _workdir(args.workdir) as workdir:
        ghz = Ghz(tools["ghz"], Certs.create(workdir / "certs"), workdir / "ghz-data")
        log(f"starting etcd and kube-apiserver (workdir {workdir})")
        # The apiserver alone: nothing acts on 100,000 Deployments but scalekeeper.
        with ControlPlane(workdir / "control-plane", components=Components.APISERVER) as plane:
            install_crd_on(plane.kubeconfig)
            asyncio.run(run(args, plane, workdir, results, ghz))
        if args.cluster and not args.skip_latency:
            log("starting a control plane with kube-controller-manager, kube-scheduler and KWOK")
            with ControlPlane(workdir / "cluster", components=Components.CLUSTER) as plane:
                install_crd_on(plane.kubeconfig)
                asyncio.run(bench_changes.measure_on_cluster(results, plane, ghz.certs, workdir, args.changes))
        results.elapsed_s = time.perf_counter() - started
        results.load_average_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
        results.notes += bench_reads.notes(results)
        targets = [target for section in SECTIONS if hasattr(section, "targets") for target in section.targets(results)]
        output = Path(args.output)
        output.write_text(render(results, targets, ghz, invocation, workdir) + _hand_written_tail(output))
        print_summary(results, targets)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
