"""Which builder `make image`/`make build`/Tilt use, and why (python/scalekeeper_dev/image.py).

Debian's nix-bin 2.8 (installed by .ci/run for the parse check) must not be
taken for a Nix that can build this flake. The end-to-end cases run `make
image` with stand-in `nix` and `docker` executables that print what the real
ones print and write a docker-archive, so the Makefile wiring is covered too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from scalekeeper_dev import image, imagearchive

REPO = Path(__file__).resolve().parents[2]

# Writes a one-image docker-archive at argv[1] named argv[2] (what the stand-ins "build").
WRITE_ARCHIVE = """
import io, json, sys, tarfile
def add(tar, name, data):
    info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))
with tarfile.open(sys.argv[1], "w") as tar:
    add(tar, "layer.tar", b"layer")
    add(tar, "config.json", b"{}")
    name, tag = sys.argv[2].rsplit(":", 1)
    manifest = [{"Config": "config.json", "RepoTags": [sys.argv[2]], "Layers": ["layer.tar"]}]
    add(tar, "manifest.json", json.dumps(manifest).encode())
    add(tar, "repositories", json.dumps({name: {tag: "abc"}}).encode())
"""


def fake_probe(answers: dict[str, image.ProbeResult]) -> tuple[image.Probe, list[list[str]]]:
    calls: list[list[str]] = []

    def probe(argv: Sequence[str]) -> image.ProbeResult:
        calls.append(list(argv))
        key = " ".join(arg for arg in argv[1:] if not arg.startswith("--extra") and arg != "nix-command flakes")
        return answers.get(key, image.ProbeResult(1, "", f"unexpected: {key}"))

    return probe, calls


@pytest.fixture
def nix_on_path(tmp_path: Path) -> str:
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 1\n")
    nix.chmod(0o755)
    return str(nix)


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("nix (Nix) 2.8.0\n", (2, 8, 0)),
        ("nix (Nix) 2.18.1", (2, 18, 1)),
        ("nix (Nix) 2.20.0pre20231201_abcdef", (2, 20, 0)),
        ("nix (Lix, like Nix) 2.91.1", (2, 91, 1)),
        ("nix (Determinate Nix 3.8.2) 2.30.1", (2, 30, 1)),
        ("", None),
        ("command not found", None),
    ],
)
def test_parse_nix_version(output: str, version: tuple[int, ...] | None) -> None:
    assert image.parse_nix_version(output) == version


def test_debians_nix_28_is_not_usable(nix_on_path: str) -> None:
    probe, calls = fake_probe({"--version": image.ProbeResult(0, "nix (Nix) 2.8.0\n")})
    availability = image.nix_availability(nix_on_path, probe)
    assert not availability.usable
    assert availability.reason == "nix 2.8.0 is older than 2.18, which this flake's nixpkgs needs"
    assert len(calls) == 1


@pytest.mark.parametrize(("version", "show"), [("2.18.1", "show-config --json"), ("2.24.9", "config show --json")])
def test_a_recent_nix_with_flakes_is_usable(nix_on_path: str, version: str, show: str) -> None:
    config = json.dumps({"experimental-features": {"value": ["flakes", "nix-command"]}})
    # A warning on stderr (deprecated alias, unknown setting) does not spoil the JSON on stdout.
    warning = "warning: unknown setting 'foo'\n"
    probe, _ = fake_probe(
        {"--version": image.ProbeResult(0, f"nix (Nix) {version}"), show: image.ProbeResult(0, config, warning)}
    )
    assert image.nix_availability(nix_on_path, probe) == image.Availability(True, f"nix {version} with flakes")


def test_a_nix_without_flakes_is_not_usable(nix_on_path: str) -> None:
    config = json.dumps({"experimental-features": {"value": ["nix-command"]}})
    probe, _ = fake_probe(
        {"--version": image.ProbeResult(0, "nix (Nix) 2.18.1"), "show-config --json": image.ProbeResult(0, config)}
    )
    assert image.nix_availability(nix_on_path, probe).reason == "nix 2.18.1 has no flakes support"
    probe, _ = fake_probe(
        {
            "--version": image.ProbeResult(0, "nix (Nix) 2.18.1"),
            "show-config --json": image.ProbeResult(1, "", "error: broken\n"),
        }
    )
    assert "cannot read its configuration: error: broken" in image.nix_availability(nix_on_path, probe).reason


def test_no_nix_on_path(tmp_path: Path) -> None:
    assert image.nix_availability(str(tmp_path / "nix")).reason.endswith("not found on PATH")


def _backend(name: str, usable: bool, reason: str) -> image.Backend:
    return image.Backend(name, lambda: image.Availability(usable, reason), lambda _request: [])


def test_select_takes_the_first_usable_and_says_why() -> None:
    candidates = [_backend("nix", False, "nix 2.8.0 is older than 2.18"), _backend("docker", True, "docker 28.1")]
    backend, why = image.select(candidates)
    assert backend.name == "docker"
    assert why == "image builder: docker (docker 28.1); not nix: nix 2.8.0 is older than 2.18"
    assert "\n" not in why


def test_select_insisting_on_a_backend() -> None:
    candidates = [_backend("nix", True, "nix 2.24"), _backend("docker", True, "docker 28.1")]
    assert image.select(candidates, "docker")[0].name == "docker"
    with pytest.raises(image.NoBuilderError, match=r"unknown image builder 'podman' \(known: nix, docker\)"):
        image.select(candidates, "podman")
    with pytest.raises(image.NoBuilderError, match="no image builder is usable: not nix: too old; not docker: gone"):
        image.select([_backend("nix", False, "too old"), _backend("docker", False, "gone")])


def test_backend_commands(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    dev = image.ImageRequest(image.FLAVORS["image-dev"], archive, "scalekeeper-dev:tilt-123")
    (nix_build,) = image.nix_commands("nix")(dev)
    assert nix_build == ["nix", *image.NIX_FLAGS, "build", ".#image-dev", "--out-link", str(archive)]
    (docker_build,) = image.docker_commands()(dev)
    assert docker_build[docker_build.index("--target") + 1] == "dev"
    assert docker_build[docker_build.index("--tag") + 1] == "scalekeeper-dev:tilt-123"
    assert f"SOURCE_DATE_EPOCH={image.SOURCE_DATE_EPOCH}" in docker_build
    assert f"type=docker,dest={archive},rewrite-timestamp=true" in docker_build
    (production,) = image.docker_commands()(image.ImageRequest(image.FLAVORS["image"], archive))
    assert production[production.index("--target") + 1] == "runtime"
    assert production[production.index("--tag") + 1] == f"scalekeeper:{image.context_digest()}"


def test_app_build_falls_back_to_uv_with_the_locked_hatchling() -> None:
    assert image.app_commands(True, "nix", "uv") == [["nix", *image.NIX_FLAGS, "build", ".#default"]]
    with_backend, exact = image.app_commands(False, "nix", "uv")
    assert with_backend[-2:] == ["--group", "build"]
    assert exact == ["uv", *image.RUNTIME_SYNC]
    assert "--no-build-isolation-package" in exact


def test_build_renames_a_nix_store_archive_without_touching_it(tmp_path: Path) -> None:
    store = tmp_path / "store-image.tar"
    subprocess.run([sys.executable, "-c", WRITE_ARCHIVE, str(store), "scalekeeper-dev:nixhash"], check=True)
    store.chmod(0o444)
    before = store.read_bytes()
    link = tmp_path / "image.tar"
    backend = image.Backend(
        "nix", lambda: image.Availability(True, ""), lambda r: [["ln", "-s", str(store), str(r.archive)]]
    )
    ref = image.build(
        backend, image.ImageRequest(image.FLAVORS["image-dev"], link, "scalekeeper-dev:tilt-1"), cwd=tmp_path
    )
    assert ref == "scalekeeper-dev:tilt-1"
    assert not link.is_symlink()
    assert store.read_bytes() == before
    with tarfile.open(link) as tar:
        assert sorted(tar.getnames()) == ["config.json", "layer.tar", "manifest.json", "repositories"]
        assert json.loads(tar.extractfile("repositories").read()) == {"scalekeeper-dev": {"tilt-1": "abc"}}
    assert imagearchive.ref_of(store) == "scalekeeper-dev:nixhash"


def _stand_ins(bin_dir: Path, nix_version: str, docker: bool) -> None:
    """`nix` and (optionally) `docker` executables that answer like the real ones."""
    bin_dir.mkdir()
    scripts = {
        "nix": f"import sys\nprint('nix (Nix) {nix_version}')\nsys.exit(0 if sys.argv[1:] == ['--version'] else 1)\n"
    }
    if docker:
        scripts["docker"] = (
            "import subprocess, sys\nargs = sys.argv[1:]\n"
            "if args[:2] == ['buildx', 'build']:\n"
            "    dest = args[args.index('--output') + 1].split('dest=')[1].split(',')[0]\n"
            "    tag = args[args.index('--tag') + 1]\n"
            f"    subprocess.run([sys.executable, '-c', {WRITE_ARCHIVE!r}, dest, tag], check=True)\n"
            "print('28.1.1')\n"
        )
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_dir / name).chmod(0o755)


def _make_image(tmp_path: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    env.pop("SCALEKEEPER_IMAGE_BUILDER", None)
    archive, ref_file = tmp_path / "image.tar", tmp_path / "image.ref"
    return subprocess.run(
        ["make", "-s", "image", f"NIX={tmp_path / 'bin' / 'nix'}", f"IMAGE_ARCHIVE={archive}",
         f"IMAGE_REF_FILE={ref_file}", *variables],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_make_image_falls_back_to_the_dockerfile_below_nix_218(tmp_path: Path) -> None:
    _stand_ins(tmp_path / "bin", "2.8.0", docker=True)
    result = _make_image(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "image builder: docker (docker 28.1.1 with buildx); not nix: nix 2.8.0 is older than 2.18" in result.stdout
    ref = (tmp_path / "image.ref").read_text().strip()
    assert ref == f"scalekeeper:{image.context_digest()}"
    assert imagearchive.ref_of(tmp_path / "image.tar") == ref


def test_make_image_with_no_usable_builder_says_why(tmp_path: Path) -> None:
    _stand_ins(tmp_path / "bin", "2.8.0", docker=False)
    # A buildah that does not work (the real one would build: this host can run it).
    (tmp_path / "bin" / "buildah").write_text("#!/bin/sh\necho 'cannot create storage' >&2\nexit 125\n")
    (tmp_path / "bin" / "buildah").chmod(0o755)
    result = _make_image(tmp_path)
    assert result.returncode != 0
    assert "no image builder is usable: not nix: nix 2.8.0 is older than 2.18" in result.stderr
    assert "not docker: docker not found on PATH" in result.stderr
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        assert "failed: cannot create storage" in result.stderr
