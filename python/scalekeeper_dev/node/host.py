"""Whether this host can run a real node, and the distribution packages it needs.

A node needs root (network namespaces, cgroups, mounts, iptables) and Linux.
runc, the CNI plugins, iptables and conntrack come from the distribution: on
Debian/Ubuntu they are installed when missing; elsewhere the error names them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Debian package -> a file it installs (present means installed).
DEBIAN_PACKAGES: dict[str, str] = {
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/nsenter",
    # The pause image is Kubernetes' pause.c, compiled statically.
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
}
RUNC = Path(DEBIAN_PACKAGES["runc"])
CNI_BIN_DIR = Path(DEBIAN_PACKAGES["containernetworking-plugins"]).parent


class HostError(RuntimeError):
    pass


def unsupported_reason() -> str | None:
    """Why this host cannot run a real node, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"a real node needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "a real node needs root (network namespaces, cgroups, mounts, iptables)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "a real node needs cgroups mounted at /sys/fs/cgroup"
    if not Path("/etc/debian_version").exists() and missing_packages():
        return f"install {', '.join(missing_packages())} (only Debian/Ubuntu packages are installed automatically)"
    return None


def missing_packages() -> list[str]:
    return [package for package, path in DEBIAN_PACKAGES.items() if not Path(path).exists()]


def ensure_packages(packages: dict[str, str] | None = None) -> None:
    """apt-get install whatever of ``packages`` (default: the node's) is missing."""
    wanted = DEBIAN_PACKAGES if packages is None else packages
    missing = [package for package, path in wanted.items() if not Path(path).exists()]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise HostError(f"missing {', '.join(missing)}: install them with the distribution's package manager")
    print(f"apt-get install {' '.join(missing)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise HostError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
