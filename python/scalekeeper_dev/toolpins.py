"""What the developer tools are pinned to: Go module, version, binaries and build flags of each.

Kept apart from ``toolchain`` (which finds or builds them) so that a version
bump is a one-line change here, read without the build machinery around it.
A tool lives in ``CACHE_DIR/tools/<name>-<version>/`` once built.
"""

from __future__ import annotations

import os
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
