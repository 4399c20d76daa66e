"""What a node leaves behind when its processes stop, and its removal.

Stopping containerd and the kubelet does not stop pods: containers keep
running under their shims (which re-parent to init), containerd's CNI leaves a
network namespace per pod, the kubelet leaves volume mounts and its QoS
cgroups. :func:`clear` removes all of it, in an order that works (processes
before cgroups, mounts before directories); :func:`leftovers` lists whatever of
it is still there, for the test that teardown leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"  # the kubelet's QoS root (cgroupfs driver, cgroupRoot "/")
SHIM = "containerd-shim-runc-v2"


def _proc_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def shim_pids(containerd_socket: Path) -> list[int]:
    """Shims that serve this node's containerd (found by the socket address on their command line)."""
    found = []
    for pid in _pids():
        argv = _proc_cmdline(pid)
        if argv and Path(argv[0]).name == SHIM and str(containerd_socket) in argv:
            found.append(pid)
    return found


def kubepods_cgroups() -> list[Path]:
    """The kubelet's cgroup trees, one per mounted controller hierarchy."""
    return sorted(path for path in CGROUP_ROOT.glob(f"*/{KUBEPODS}") if path.is_dir())


def _cgroup_pids(tree: Path) -> list[int]:
    pids: set[int] = set()
    for procs in tree.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in procs.read_text().split())
    return sorted(pids)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root)
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)


def clear(root: Path, containerd_socket: Path, pod_namespaces: list[str]) -> None:
    """Remove the node's pods, shims, pod network namespaces, mounts and cgroups (idempotent)."""
    # Containers first (every process in the kubelet's cgroups is a pod's), then their shims.
    for tree in kubepods_cgroups():
        victims = _cgroup_pids(tree)
        _kill(victims)
        _wait_gone(victims)
    shims = shim_pids(containerd_socket)
    _kill(shims)
    _wait_gone(shims)
    for name in pod_namespaces:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for tree in kubepods_cgroups():
        # Leaf first: a cgroup directory is removable once it has no children and no tasks.
        for directory in sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def leftovers(root: Path, containerd_socket: Path, pod_namespaces: list[str]) -> list[str]:
    """Everything :func:`clear` removes that is still present."""
    found = [f"shim pid {pid}" for pid in shim_pids(containerd_socket)]
    found += [f"cgroup {tree}" for tree in kubepods_cgroups()]
    found += [f"network namespace {name}" for name in pod_namespaces if (Path("/run/netns") / name).exists()]
    found += [f"mount {point}" for point in mounts_under(root)]
    return found
