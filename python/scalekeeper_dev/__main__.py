"""CLI of the developer harness: ``python -m scalekeeper_dev {tools,certs,cluster-up,cluster-down,run,image,build}``.

``cluster-up`` must return to the shell while the control plane keeps running,
yet the control plane must not outlive whoever owns it. So it starts a
detached *supervisor* process (its own session; pid in
``.dev/cluster/supervisor.pid``) that runs the same :class:`ControlPlane` the
tests use, and ``cluster-down`` stops that supervisor; every component dies
with it (PR_SET_PDEATHSIG), even if it is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scalekeeper_dev import controlplane, devcerts, imagecli, toolchain, toolpins
from scalekeeper_dev.node import cli as node_cli
from scalekeeper_dev.node import host, realcluster, realnode

_STARTUP_TIMEOUT = 180.0
_SHUTDOWN_TIMEOUT = 30.0


class _Layout:
    """Files of the background cluster under the dev directory (default ``.dev``)."""

    def __init__(self, dev_dir: Path) -> None:
        self.dev_dir = dev_dir.resolve()
        self.cluster_dir = self.dev_dir / "cluster"
        self.pid_file = self.cluster_dir / "supervisor.pid"
        self.state_file = self.cluster_dir / "state.json"
        self.log_file = self.cluster_dir / "supervisor.log"
        self.kubeconfig = self.dev_dir / "kubeconfig"


def _tool_version(path: Path, binary: str) -> str:
    args = toolpins.BINARIES[binary].version_args
    # kubectl's --version is deprecated and prints a warning; `version --client` is its stable form.
    if binary == "kubectl":
        args = ("version", "--client")
    try:
        out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"(version unknown: {error})"
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0] if lines else "(no version output)"


def cmd_tools(_args: argparse.Namespace) -> int:
    for binary, path in toolchain.ensure_all(real_node=host.unsupported_reason() is None).items():
        print(f"{binary:15} {path}  {_tool_version(path, binary)}")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    written = devcerts.write_dev_certs(directory, force=args.force)
    verb = "wrote" if written else "kept existing (use --force to replace)"
    print(f"{verb}: {', '.join(str(directory / name) for name in devcerts.DEV_CERT_FILES)}")
    return 0


def _read_pid(layout: _Layout) -> int | None:
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    # A stale pid file may name a recycled pid: only trust it if it is our supervisor.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid if _alive(pid) else None
    return pid if b"scalekeeper_dev" in cmdline and b"_supervise" in cmdline else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _usage(layout: _Layout) -> str:
    state = json.loads(layout.state_file.read_text()) if layout.state_file.exists() else {}
    kubeconfig = os.path.relpath(layout.kubeconfig)
    pids = state.get("pids", {})
    versions = "".join(
        f"  {name:24} pid {pids.get(name, '?'):<8} {_tool_version(Path(path), name)}\n"
        for name, path in state.get("binaries", {}).items()
    )
    return (
        f"control plane at {state.get('server', '?')} {state.get('startup', '')}\n{versions}"
        f"  export KUBECONFIG=$PWD/{kubeconfig}; kubectl get nodes,pods -A\n"
        f"  logs: {os.path.relpath(layout.cluster_dir)}/{{{','.join([*pids, 'supervisor'])}}}.log\n"
        "  stop: make cluster-down"
    )


def cmd_cluster_up(args: argparse.Namespace) -> int:
    layout = _Layout(Path(args.dev_dir))
    if _read_pid(layout) is not None and layout.state_file.exists():
        print("already running")
        print(_usage(layout))
        return 0
    # Build missing tools here, in the foreground, where the user sees it.
    components = controlplane.Components.CLUSTER if args.nodes == "kwok" else controlplane.Components.CONTROLLERS
    for name in components.names:
        toolchain.ensure(name)
    if args.nodes == "real":
        try:
            realnode.ensure_prerequisites()
        except realnode.NodeError as error:
            print(f"cannot run a real node here: {error}", file=sys.stderr)
            return 1
    layout.cluster_dir.mkdir(parents=True, exist_ok=True)
    layout.state_file.unlink(missing_ok=True)
    with layout.log_file.open("ab") as log:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scalekeeper_dev",
                "_supervise",
                "--dev-dir",
                str(layout.dev_dir),
                "--nodes",
                args.nodes,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this shell; Ctrl-C here does not reach it
        )
    layout.pid_file.write_text(f"{supervisor.pid}\n")
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while not layout.state_file.exists():
        if supervisor.poll() is not None:
            layout.pid_file.unlink(missing_ok=True)
            tail = "\n".join(layout.log_file.read_text(errors="replace").splitlines()[-30:])
            print(f"the control plane failed to start; {layout.log_file}:\n{tail}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"not ready after {_STARTUP_TIMEOUT}s, see {layout.log_file}", file=sys.stderr)
            _terminate(supervisor.pid)
            return 1
        time.sleep(0.1)
    print(_usage(layout))
    return 0


def _terminate(pid: int) -> bool:
    """SIGTERM, then SIGKILL after a grace period; returns whether the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _SHUTDOWN_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # The supervisor is not our child (cluster-up started it), so there is no zombie to reap.
    deadline = time.monotonic() + 5.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def cmd_cluster_down(args: argparse.Namespace) -> int:
    layout = _Layout(Path(args.dev_dir))
    pid = _read_pid(layout)
    if pid is None:
        print("no control plane running")
    elif _terminate(pid):
        print(f"stopped (supervisor pid {pid})")
    else:
        print(f"supervisor pid {pid} did not stop", file=sys.stderr)
        return 1
    # Certificates, etcd data and logs go too: nothing of the cluster stays behind.
    shutil.rmtree(layout.cluster_dir, ignore_errors=True)
    layout.kubeconfig.unlink(missing_ok=True)
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    """Run the control plane until SIGTERM/SIGINT/SIGHUP (internal: started by cluster-up)."""
    layout = _Layout(Path(args.dev_dir))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    exit_code = 0
    cluster = (
        realcluster.RealNodeCluster(layout.cluster_dir)
        if args.nodes == "real"
        else controlplane.ControlPlane(workdir=layout.cluster_dir)
    )
    with cluster as plane:
        shutil.copyfile(plane.kubeconfig, layout.kubeconfig)
        layout.kubeconfig.chmod(0o600)
        state = {
            "server": plane.server,
            "kubeconfig": str(layout.kubeconfig),
            "pids": plane.pids,
            "binaries": {name: str(path) for name, path in plane.binaries.items()},
            "startup": plane.startup_summary(),
        }
        # Written last and atomically: its existence is the "ready" signal cluster-up waits for.
        tmp = layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(layout.state_file)
        print(f"ready: {json.dumps(state)}", flush=True)
        running = len(plane.pids)
        while not stop.wait(1.0):
            if len(plane.pids) < running:
                print(f"a child died (running: {plane.pids}); shutting down", flush=True)
                exit_code = 1
                break
    layout.state_file.unlink(missing_ok=True)
    print("stopped", flush=True)
    return exit_code


def cmd_run(args: argparse.Namespace) -> int:
    from scalekeeper_dev import devrun

    return devrun.run(Path(args.dev_dir).resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scalekeeper_dev", description="scalekeeper developer harness")
    # `_supervise` is internal: kept out of the listing.
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{tools,certs,cluster-up,cluster-down,run,image,build}"
    )
    commands.add_parser("tools", help="build/locate every pinned tool; print paths and versions").set_defaults(
        func=cmd_tools
    )
    certs = commands.add_parser("certs", help="write development certificates")
    certs.add_argument("--dir", default=".dev/certs")
    certs.add_argument("--force", action="store_true", help="replace existing certificates")
    certs.set_defaults(func=cmd_certs)
    for name, func, text in (
        ("run", cmd_run, "run the server on $KUBECONFIG's cluster or a local control plane, with demo data"),
        ("cluster-up", cmd_cluster_up, "start the local cluster (control plane + KWOK nodes) in the background"),
        ("cluster-down", cmd_cluster_down, "stop the background control plane"),
        ("_supervise", cmd_supervise, None),
    ):
        sub = commands.add_parser(name, **({"help": text} if text else {}))
        sub.add_argument("--dev-dir", default=".dev", help="where kubeconfig and cluster/ live")
        if name in ("cluster-up", "_supervise"):
            sub.add_argument(
                "--nodes", choices=("kwok", "real"), default="kwok", help="simulated nodes, or one real node (root)"
            )
        sub.set_defaults(func=func)
    imagecli.add_commands(commands)
    node_cli.add_commands(commands)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
