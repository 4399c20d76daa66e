"""Which builder makes the container image (and the app), and why: `make image`, `make build`, Tilt.

Nix is the primary build (flake.nix), but only a Nix that can evaluate this
flake counts: the pinned nixpkgs needs Nix >= 2.18 (its lib/minfeatures.nix
asks for builtins.readFileType), and the `nix-command` and `flakes` features.
Debian's nix-bin 2.8, which CI installs for `nix-instantiate --parse`, is too
old, so finding `nix` on PATH is not enough: without a usable Nix the image is
built from the Dockerfile (by docker, else daemonless by buildah), and a
one-line message says why.

A backend is a name, an availability check that explains itself, and the
commands that write a docker-archive tarball (what `kind load image-archive`
and `docker load` take). Backends are tried in order; `--builder NAME` (or
SCALEKEEPER_IMAGE_BUILDER) insists on one. To add one, append a Backend to
the list `backends()` returns.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scalekeeper_dev import buildah, imagearchive

MIN_NIX_VERSION = (2, 18)
NIX_FEATURES = ("nix-command", "flakes")
NIX_FLAGS = ("--extra-experimental-features", " ".join(NIX_FEATURES))
# Same instant as nix/image.nix's `created`: both builders stamp the same date.
SOURCE_DATE_EPOCH = 1
REPO = Path(__file__).resolve().parents[2]
# What enters the Docker build context (.dockerignore): the tag is their digest.
DOCKER_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md", "nix/dev-reloader.py")
DOCKER_INPUT_TREES = ("docker", "python/scalekeeper")


@dataclass(frozen=True)
class Flavor:
    """One image: production, or Tilt's dev image (reloader, writable sources)."""

    repository: str
    flake_output: str
    dockerfile_target: str


FLAVORS = {
    "image": Flavor("scalekeeper", "image", "runtime"),
    "image-dev": Flavor("scalekeeper-dev", "image-dev", "dev"),
}


@dataclass(frozen=True)
class Availability:
    usable: bool
    reason: str  # one line: what was found, or why it cannot be used


@dataclass(frozen=True)
class ImageRequest:
    flavor: Flavor
    archive: Path
    # name:tag for the image; None keeps the backend's content-derived tag.
    ref: str | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    check: Callable[[], Availability]
    commands: Callable[[ImageRequest], list[list[str]]]


@dataclass(frozen=True)
class ProbeResult:
    code: int
    stdout: str
    stderr: str = ""

    @property
    def why(self) -> str:
        """The first line of what the command said, for a one-line reason."""
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return lines[0] if lines else f"exit {self.code}, no output"


# Runs a command and reports what it said; swapped in tests.
Probe = Callable[[Sequence[str]], ProbeResult]


def run_probe(argv: Sequence[str]) -> ProbeResult:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return ProbeResult(127, "", str(error))
    return ProbeResult(done.returncode, done.stdout, done.stderr)


def parse_nix_version(output: str) -> tuple[int, ...] | None:
    """`nix --version` -> (2, 18, 1); also for Lix and Determinate Nix, whose last number is Nix's."""
    first_line = output.strip().splitlines()[0] if output.strip() else ""
    found = re.findall(r"(\d+)\.(\d+)(?:\.(\d+))?", first_line)
    if not found:
        return None
    return tuple(int(part) for part in found[-1] if part)


def nix_availability(nix: str, probe: Probe = run_probe) -> Availability:
    if shutil.which(nix) is None:
        return Availability(False, f"{nix} not found on PATH")
    answer = probe([nix, "--version"])
    version = parse_nix_version(answer.stdout) if answer.code == 0 else None
    if version is None:
        return Availability(False, f"`{nix} --version` failed: {answer.why}")
    shown = ".".join(map(str, version))
    if version[:2] < MIN_NIX_VERSION:
        needed = ".".join(map(str, MIN_NIX_VERSION))
        return Availability(False, f"nix {shown} is older than {needed}, which this flake's nixpkgs needs")
    # `show-config` became `config show` in Nix 2.20 (the old name warns there).
    show = ["config", "show"] if version[:2] >= (2, 20) else ["show-config"]
    answer = probe([nix, *NIX_FLAGS, *show, "--json"])
    try:
        features = json.loads(answer.stdout)["experimental-features"]["value"] if answer.code == 0 else None
    except (ValueError, KeyError, TypeError):
        features = None
    if features is None:
        return Availability(False, f"nix {shown}: cannot read its configuration: {answer.why}")
    missing = [feature for feature in NIX_FEATURES if feature not in features]
    if missing:
        return Availability(False, f"nix {shown} has no {' or '.join(missing)} support")
    return Availability(True, f"nix {shown} with flakes")


def nix_commands(nix: str) -> Callable[[ImageRequest], list[list[str]]]:
    def commands(request: ImageRequest) -> list[list[str]]:
        return [[nix, *NIX_FLAGS, "build", f".#{request.flavor.flake_output}", "--out-link", str(request.archive)]]

    return commands


def docker_availability(docker: str = "docker", probe: Probe = run_probe) -> Availability:
    if shutil.which(docker) is None:
        return Availability(False, f"{docker} not found on PATH")
    answer = probe([docker, "buildx", "version"])
    if answer.code != 0:
        return Availability(False, f"docker buildx is not available: {answer.why}")
    answer = probe([docker, "version", "--format", "{{.Server.Version}}"])
    if answer.code != 0:
        return Availability(False, f"the docker daemon is not reachable: {answer.why}")
    return Availability(True, f"docker {answer.stdout.strip()} with buildx")


def docker_commands(docker: str = "docker") -> Callable[[ImageRequest], list[list[str]]]:
    def commands(request: ImageRequest) -> list[list[str]]:
        ref = request.ref or f"{request.flavor.repository}:{context_digest()}"
        return [
            [
                docker,
                "buildx",
                "build",
                "--target",
                request.flavor.dockerfile_target,
                "--build-arg",
                f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}",
                # Written straight to a tarball, file times clamped: same inputs, same layers. Needs a
                # builder that exports tarballs: Docker's containerd image store, or the docker-container
                # driver (`docker buildx create --use`); docker says so when it is missing.
                "--output",
                f"type=docker,dest={request.archive},rewrite-timestamp=true",
                "--tag",
                ref,
                str(REPO),
            ]
        ]

    return commands


def context_digest() -> str:
    """A tag from the Docker build inputs: a changed input gives a new tag, so `helm upgrade` rolls the pods."""
    digest = hashlib.sha256()
    paths = [REPO / name for name in DOCKER_INPUTS]
    for tree in DOCKER_INPUT_TREES:
        paths += [p for p in (REPO / tree).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted(paths):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def buildah_availability() -> Availability:
    reason = buildah.unavailable_reason()
    if reason is not None:
        return Availability(False, reason)
    return Availability(True, "buildah, no daemon (the Dockerfile on a base debootstrapped from Debian)")


def buildah_commands(request: ImageRequest) -> list[list[str]]:
    ref = request.ref or f"{request.flavor.repository}:{context_digest()}"
    build = [sys.executable, "-m", "scalekeeper_dev.buildah", "--archive", str(request.archive), "--ref", ref]
    return [[*build, "--target", request.flavor.dockerfile_target]]


def backends(nix: str = "nix") -> list[Backend]:
    return [
        Backend("nix", lambda: nix_availability(nix), nix_commands(nix)),
        Backend("docker", docker_availability, docker_commands()),
        Backend("buildah", buildah_availability, buildah_commands),
    ]


class NoBuilderError(Exception):
    pass


def select(candidates: Sequence[Backend], insist_on: str | None = None) -> tuple[Backend, str]:
    """The first usable backend (or the one insisted on), and one line saying why."""
    if insist_on:
        chosen = [backend for backend in candidates if backend.name == insist_on]
        if not chosen:
            names = ", ".join(backend.name for backend in candidates)
            raise NoBuilderError(f"unknown image builder {insist_on!r} (known: {names})")
        candidates = chosen
    skipped: list[str] = []
    for backend in candidates:
        availability = backend.check()
        if availability.usable:
            why = f"; {'; '.join(skipped)}" if skipped else ""
            return backend, f"image builder: {backend.name} ({availability.reason}){why}"
        skipped.append(f"not {backend.name}: {availability.reason}")
    raise NoBuilderError("no image builder is usable: " + "; ".join(skipped))


def build(backend: Backend, request: ImageRequest, cwd: Path = REPO) -> str:
    """Write request.archive with the backend; returns the image's ref."""
    request.archive.parent.mkdir(parents=True, exist_ok=True)
    # Nix's --out-link replaces a symlink but not a file an earlier docker build left.
    request.archive.unlink(missing_ok=True)
    for argv in backend.commands(request):
        subprocess.run(argv, check=True, cwd=cwd)
    if request.ref and imagearchive.ref_of(request.archive) != request.ref:
        imagearchive.retag(request.archive, request.ref)
    return imagearchive.ref_of(request.archive)


# The runtime virtualenv from uv.lock, built the way the Dockerfile builds it:
# hatchling comes from the lock's `build` group (hashes checked), not from an
# unpinned isolated build environment; the second, exact sync drops it again.
RUNTIME_SYNC = ("sync", "--frozen", "--no-dev", "--no-editable", "--no-build-isolation-package", "scalekeeper")
RUNTIME_VENV = Path(".dev/runtime")


def app_commands(nix_usable: bool, nix: str, uv: str) -> list[list[str]]:
    """`make build`: Nix's runtime virtualenv at ./result, else the same virtualenv from uv at .dev/runtime."""
    if nix_usable:
        return [[nix, *NIX_FLAGS, "build", ".#default"]]
    return [[uv, *RUNTIME_SYNC, "--group", "build"], [uv, *RUNTIME_SYNC]]
