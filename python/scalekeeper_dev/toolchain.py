"""Pinned developer tools, found on PATH or built once from Go modules.

The integration tests need a real etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (simulated nodes), and the workflow needs kubectl,
helm, grpcurl and ghz. None of them may be downloaded as a
prebuilt binary here, so each is built from the Go module proxy into
``~/.cache/scalekeeper/tools/<name>-<version>/`` and reused from then on.
A binary already on PATH (the Nix dev shell puts them there) is used instead
when its version has the pinned major.minor.

``k8s.io/kubernetes`` and ``go.etcd.io/etcd/server/v3`` cannot be
``go install``-ed: their go.mod files carry replace directives. They are built
from a throw-away wrapper module that requires them and, for Kubernetes,
replaces each staging module with its published ``v0.Y.Z`` release; the
replace list is read from Kubernetes' own go.mod, so no list is kept here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("SCALEKEEPER_CACHE", Path.home() / ".cache" / "scalekeeper"))


@dataclass(frozen=True)
class GoTool:
    """One Go module build that yields one or more binaries."""

    name: str
    module: str
    version: str
    packages: dict[str, str]  # binary name -> Go package path
    version_args: tuple[str, ...] = ("--version",)
    wrapper: bool = False  # build from a wrapper module (replace directives upstream)
    ldflags: tuple[str, ...] = ()
    # Tools of one module share its wrapper module's directory (and build lock),
    # so a second tool entry reuses the module download and the Go build cache.
    shares_build_of: str = ""
    tags: tuple[str, ...] = ()  # Go build tags
    real_node: bool = False  # only the real node needs it (Linux, root): ensure_all(real_node=True)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def build_dir(self) -> Path:
        return CACHE_DIR / "build" / (self.shares_build_of or self.key)

    @property
    def install_dir(self) -> Path:
        return CACHE_DIR / "tools" / self.key


KUBERNETES_VERSION = "v1.37.2"
KWOK_VERSION = "v0.8.0"
_KUBE_MINOR = KUBERNETES_VERSION.split(".")[1]
_KUBE_VERSION_LDFLAGS = tuple(
    f"-X {pkg}.{name}={value}"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for name, value in (
        ("gitVersion", KUBERNETES_VERSION),
        ("gitMajor", "1"),
        ("gitMinor", _KUBE_MINOR),
        ("gitTreeState", "clean"),
    )
)

# The one place where tool versions are pinned.
TOOLS: dict[str, GoTool] = {
    "kubernetes": GoTool(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        wrapper=True,
        ldflags=_KUBE_VERSION_LDFLAGS,
    ),
    # A tool entry of its own, so the cached kube-apiserver/kubectl stay valid,
    # built from the same wrapper module: only the packages are compiled anew.
    "kubernetes-controllers": GoTool(
        name="kubernetes-controllers",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        },
        wrapper=True,
        ldflags=_KUBE_VERSION_LDFLAGS,
        shares_build_of=f"kubernetes-{KUBERNETES_VERSION}",
    ),
    # Simulated nodes (python/scalekeeper_dev/kwok.py); its stage definitions
    # are read from this module's source (module_dir).
    "kwok": GoTool(
        name="kwok",
        module="sigs.k8s.io/kwok",
        version=KWOK_VERSION,
        packages={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        version_args=("--version",),
        ldflags=(f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.removeprefix('v')}",),
    ),
    "etcd": GoTool(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version="v3.6.16",
        packages={"etcd": "go.etcd.io/etcd/server/v3"},
        wrapper=True,
    ),
    "helm": GoTool(
        name="helm",
        module="helm.sh/helm/v3",
        version="v3.22.0",
        packages={"helm": "helm.sh/helm/v3/cmd/helm"},
        version_args=("version", "--short"),
        ldflags=("-X helm.sh/helm/v3/internal/version.version=v3.22.0",),
    ),
    "grpcurl": GoTool(
        name="grpcurl",
        module="github.com/fullstorydev/grpcurl",
        version="v1.9.3",
        packages={"grpcurl": "github.com/fullstorydev/grpcurl/cmd/grpcurl"},
        version_args=("-version",),
        ldflags=("-X main.version=v1.9.3",),
    ),
    # The real node (python/scalekeeper_dev/node/): same wrapper module and
    # version stamps as kube-apiserver, so the Go build cache is shared.
    "kubernetes-node": GoTool(
        name="kubernetes-node",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
        wrapper=True,
        ldflags=_KUBE_VERSION_LDFLAGS,
        shares_build_of=f"kubernetes-{KUBERNETES_VERSION}",
        real_node=True,
    ),
    # containerd 2.x: kubelet's fallback for runtimes without the RuntimeConfig
    # call (containerd 1.x, Debian's) is scheduled for removal. Static, so the
    # cgo-only btrfs/zfs/devmapper snapshotters are left out.
    "containerd": GoTool(
        name="containerd",
        module="github.com/containerd/containerd/v2",
        version="v2.4.2",
        packages={
            "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
            "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
        },
        ldflags=(
            "-X github.com/containerd/containerd/v2/version.Version=v2.4.2",
            "-X github.com/containerd/containerd/v2/version.Revision=gomod",
        ),
        tags=("no_btrfs", "no_zfs", "no_devmapper"),
        real_node=True,
    ),
    # Cluster DNS for the real node's pods (the chart's test pod calls the
    # Service by name); serves only cluster.local and forwards nothing.
    "coredns": GoTool(
        name="coredns",
        module="github.com/coredns/coredns",
        version="v1.14.7",
        packages={"coredns": "github.com/coredns/coredns"},
        version_args=("-version",),
        real_node=True,
    ),
    # gRPC load generator for `make bench` (python/scalekeeper_dev/bench.py).
    "ghz": GoTool(
        name="ghz",
        module="github.com/bojand/ghz",
        version="v0.120.0",
        packages={"ghz": "github.com/bojand/ghz/cmd/ghz"},
        version_args=("--version",),
        ldflags=("-X main.version=v0.120.0",),
    ),
}

BINARIES: dict[str, GoTool] = {binary: tool for tool in TOOLS.values() for binary in tool.packages}


class ToolchainError(RuntimeError):
    pass


def _minor(version: str) -> str:
    match = re.search(r"v?(\d+)\.(\d+)", version)
    return f"{match.group(1)}.{match.group(2)}" if match else ""


def _on_path_with_version(binary: str, tool: GoTool) -> Path | None:
    found = shutil.which(binary)
    if found is None:
        return None
    try:
        out = subprocess.run([found, *tool.version_args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    reported = re.search(r"v?\d+\.\d+\.\d+", out.stdout + out.stderr)
    if reported and _minor(reported.group(0)) == _minor(tool.version):
        return Path(found)
    return None


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["CGO_ENABLED"] = "0"
    return env


def _go(args: list[str], cwd: Path, gobin: Path | None = None) -> str:
    if shutil.which("go") is None:
        raise ToolchainError("the Go toolchain is needed to build the pinned tools: install Go 1.26+")
    env = _go_env() if gobin is None else {**_go_env(), "GOBIN": str(gobin)}
    result = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolchainError(f"go {' '.join(args)} failed in {cwd}:\n{result.stderr[-4000:]}")
    return result.stdout


def _staging_replaces(module: str, version: str, workdir: Path) -> list[str]:
    """Replace each ``=> ./staging/...`` of the module's go.mod by a published release."""
    info = json.loads(_go(["mod", "download", "-json", f"{module}@{version}"], workdir))
    gomod = Path(info["GoMod"]).read_text()
    staging_version = "v0" + version[version.index(".") :]  # v1.37.2 -> v0.37.2
    return [
        f"replace {name} => {name} {staging_version}"
        for name in re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", gomod, re.MULTILINE)
    ]


def _build(tool: GoTool) -> None:
    workdir = tool.build_dir
    workdir.mkdir(parents=True, exist_ok=True)
    staging = tool.install_dir.with_name(tool.install_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ldflags = " ".join(("-s", "-w", *tool.ldflags))
    if tool.wrapper:
        replaces = _staging_replaces(tool.module, tool.version, workdir) if tool.module == "k8s.io/kubernetes" else []
        (workdir / "go.mod").write_text(
            "module scalekeeper.dev/toolbuild\n\ngo 1.26\n\n"
            f"require {tool.module} {tool.version}\n\n" + "\n".join(replaces) + "\n"
        )
        _go(["mod", "download", tool.module], workdir)
    for binary, package in tool.packages.items():
        # Binaries of one module share the Go build cache, so building them
        # one at a time costs little more than one `go build` for all.
        target = package if tool.wrapper else f"{package}@{tool.version}"
        verb = ["build", "-mod=mod"] if tool.wrapper else ["install"]
        output = ["-o", str(staging / binary)] if tool.wrapper else []
        tags = ["-tags", ",".join(tool.tags)] if tool.tags else []
        _go([*verb, "-trimpath", *tags, "-ldflags", ldflags, *output, target], workdir, gobin=staging)
    shutil.rmtree(tool.install_dir, ignore_errors=True)
    staging.rename(tool.install_dir)


def ensure(binary: str) -> Path:
    """Return the path of a pinned binary, building it on first use."""
    tool = BINARIES[binary]
    from_path = _on_path_with_version(binary, tool)
    if from_path is not None:
        return from_path
    cached = tool.install_dir / binary
    if not cached.exists():
        # Two processes (make tools and a test run, two engineers) must not build
        # into the same directories at once: the second waits, then finds the result.
        with _build_lock(tool):
            if not cached.exists():
                print(f"building {tool.module}@{tool.version} (first run only)...", file=sys.stderr, flush=True)
                _build(tool)
    return cached


@contextlib.contextmanager
def _build_lock(tool: GoTool) -> Iterator[None]:
    lock_path = tool.build_dir.with_name(f"{tool.build_dir.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def module_dir(tool_name: str) -> Path:
    """The source tree of a pinned tool's module, from the Go module cache (downloaded if missing)."""
    tool = TOOLS[tool_name]
    workdir = CACHE_DIR / "build"
    workdir.mkdir(parents=True, exist_ok=True)
    info = json.loads(_go(["mod", "download", "-json", f"{tool.module}@{tool.version}"], workdir))
    return Path(info["Dir"])


def ensure_all(*, real_node: bool = False) -> dict[str, Path]:
    """Every tool the workflow needs on any host, and with ``real_node`` the real node's too.

    The real node builds what it lacks when it starts, but a first build of its tools takes
    minutes: ``make tools`` builds them beforehand on a host that can run one, so that no
    test spends its time limit on a compiler.
    """
    return {binary: ensure(binary) for binary, tool in BINARIES.items() if real_node or not tool.real_node}
