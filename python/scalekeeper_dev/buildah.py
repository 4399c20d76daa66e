"""Daemonless image builds with buildah: the project's own Dockerfile, and the node's pause image.

Without Docker and without Nix the Dockerfile is still what builds the image,
so the Dockerfile itself is verified. buildah (Debian's package) runs each
``RUN`` step with chroot isolation on the host's network; no daemon.

No registry is reachable, so the Dockerfile's base (``PYTHON_IMAGE``, a
``python:3.11-slim``) is made here: Debian bookworm's Python 3.11 installed by
debootstrap from Debian's package mirror, shaped like the slim image (``python``
and ``pip`` on PATH, pip allowed to install), committed once into buildah's
store and passed as the build argument. Build steps trust the host's CA store
(the host may reach PyPI through a TLS-inspecting proxy): it is mounted for the
build only and never enters a layer.

Layers are stamped with one fixed time (``--timestamp``), so two builds of one
commit on one base give the same layer digests when the package installers
write the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scalekeeper_dev import toolpins
from scalekeeper_dev.node import host

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"buildah": "/usr/bin/buildah", "debootstrap": "/usr/sbin/debootstrap"}
PYTHON_BASE = "localhost/scalekeeper/python-base:3.11-bookworm"
DEBIAN_SUITE = "bookworm"  # its python3 is 3.11, the Dockerfile's Python
DEBIAN_MIRROR = os.environ.get("SCALEKEEPER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
BASE_ARCHIVE = toolpins.CACHE_DIR / "images" / "python-base-3.11-bookworm.tar"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SOURCE_DATE_EPOCH = 1
# Trimmed from the base, as the slim image does: caches, docs, and Debian's
# "externally managed" marker (the slim image's pip installs system-wide).
_BASE_TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/lib/python3.11/EXTERNALLY-MANAGED",
)


class BuildahError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why buildah cannot build here (None: it can, possibly once Debian's packages are installed)."""
    if not sys.platform.startswith("linux"):
        return "buildah builds need Linux"
    if os.geteuid() != 0:
        return "the buildah build path runs as root (debootstrap makes the base image)"
    found = shutil.which("buildah")
    if found is not None:
        version = subprocess.run([found, "version"], capture_output=True, text=True, check=False)
        return None if version.returncode == 0 else f"`{found} version` failed: {version.stderr.strip()[:200]}"
    if shutil.which("apt-get") is None:
        return "install buildah and debootstrap (installed automatically on Debian/Ubuntu only)"
    return None


def _run(argv: list[str], *, cwd: Path = REPO) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildahError(f"{' '.join(argv[:3])} ... failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


def _exists(ref: str) -> bool:
    return (
        subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True, check=False).returncode == 0
    )


def ensure_python_base() -> str:
    """The Dockerfile's base image, made once from Debian packages; returns its reference.

    It is kept as an archive under the tools cache too, which CI keeps (buildah's
    own store under /var/lib/containers does not survive a fresh machine).
    """
    host.ensure_packages(PACKAGES)
    if _exists(PYTHON_BASE):
        return PYTHON_BASE
    if BASE_ARCHIVE.exists():
        _run(["buildah", "pull", "--quiet", f"docker-archive:{BASE_ARCHIVE}"])
        return PYTHON_BASE
    started = time.monotonic()
    print(f"making {PYTHON_BASE} with debootstrap (first run only)...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="scalekeeper-base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        include = ",".join(BASE_PACKAGES)
        _run(["debootstrap", "--variant=minbase", f"--include={include}", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR])
        for relative in _BASE_TRIM:
            target = rootfs / relative
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
            else:
                target.unlink(missing_ok=True)
        container = _run(["buildah", "from", "scratch"]).strip()
        try:
            _run(["buildah", "copy", container, f"{rootfs}/", "/"])
            _run(
                ["buildah", "config", "--env", "LANG=C.UTF-8", "--env", f"PATH={_PATH}", "--cmd", "python3", container]
            )
            _run(["buildah", "commit", "--timestamp", str(SOURCE_DATE_EPOCH), container, PYTHON_BASE])
        finally:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    partial = BASE_ARCHIVE.with_suffix(".partial")
    save(PYTHON_BASE, partial)
    partial.rename(BASE_ARCHIVE)
    print(f"made {PYTHON_BASE} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return PYTHON_BASE


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build_dockerfile(ref: str, archive: Path, *, target: str | None = None, no_cache: bool = False) -> None:
    """Build the repository's Dockerfile as ``ref`` and save it as a docker-archive at ``archive``."""
    base = ensure_python_base()
    with tempfile.TemporaryDirectory(prefix="scalekeeper-buildah-") as scratch:
        uv_config = Path(scratch) / "uv.toml"
        # uv's own root store would not know a proxy's CA: use the system's (the mounted bundle).
        uv_config.write_text("native-tls = true\n")
        argv = [
            "buildah", "build", "--isolation", "chroot", "--network", "host", "--layers",
            "--timestamp", str(SOURCE_DATE_EPOCH),
            "--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            "--volume", f"{uv_config}:/etc/uv/uv.toml:ro",
            "--build-arg", f"PYTHON_IMAGE={base}",
            "--build-arg", f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}",
            "--tag", ref, "--file", "Dockerfile",
        ]  # fmt: skip
        if target:
            argv += ["--target", target]
        if no_cache:
            argv.append("--no-cache")
        _run([*argv, "."])
    save(ref, archive)


def save(ref: str, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    _run(["buildah", "push", "--quiet", ref, f"docker-archive:{archive}:{ref}"])


def build_static_image(ref: str, archive: Path, binary: Path, entrypoint: str) -> None:
    """An image holding one static binary (the pause image), saved as a docker-archive."""
    host.ensure_packages(PACKAGES)
    container = _run(["buildah", "from", "scratch"]).strip()
    try:
        _run(["buildah", "copy", "--chmod", "0755", container, str(binary), entrypoint])
        _run(["buildah", "config", "--entrypoint", f'["{entrypoint}"]', "--user", "65535:65535", container])
        _run(["buildah", "commit", "--timestamp", str(SOURCE_DATE_EPOCH), container, ref])
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    save(ref, archive)


def layer_digests(ref: str) -> list[str]:
    """The image's layer digests (compressed as pushed), to compare two builds."""
    out = _run(
        ["buildah", "inspect", "--type", "image", "--format", "{{range .OCIv1.RootFS.DiffIDs}}{{.}} {{end}}", ref]
    )
    return out.split()


def main(argv: list[str] | None = None) -> int:
    """The buildah backend of ``make image`` (:mod:`scalekeeper_dev.image`)."""
    parser = argparse.ArgumentParser(description="build the Dockerfile with buildah into a docker-archive")
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--ref", required=True, help="name:tag of the image")
    parser.add_argument("--target", help="Dockerfile stage (default: the last)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer (reproducibility check)")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot build with buildah: {reason}", file=sys.stderr)
        return 1
    started = time.monotonic()
    build_dockerfile(args.ref, args.archive, target=args.target, no_cache=args.no_cache)
    size_mb = args.archive.stat().st_size / 1e6
    print(f"built {args.ref} with buildah in {time.monotonic() - started:.0f}s: {args.archive} ({size_mb:.0f} MB)")
    print("layer digests: " + " ".join(layer_digests(args.ref)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
