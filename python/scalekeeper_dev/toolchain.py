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
from pathlib import Path

from scalekeeper_dev.toolpins import BINARIES, CACHE_DIR, TOOLS, GoTool


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
