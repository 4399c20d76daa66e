"""The Dockerfile and the Nix image are reproducible and name their user.

Neither can be built here (no Docker daemon, no Nix store), so this checks
what decides reproducibility: every download pinned (base by digest, uv by
hash, dependencies and the build backend by uv.lock), no `# syntax=` frontend
pulled by tag, SOURCE_DATE_EPOCH, and /etc/passwd and /etc/group entries for
uid 65532. nix/image.nix is evaluated (nix-instantiate --eval) with stand-ins
for nixpkgs' builders, so its real logic decides what lands in each image.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from scalekeeper_dev import image

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()
# Continuation lines joined: one entry per instruction.
INSTRUCTIONS = [
    line.strip() for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines() if line and not line.startswith("#")
]
PASSWD_LINE = re.compile(r"^nonroot:x:65532:65532:[^:]*:[^:]*:[^:]*$")
GROUP_LINE = re.compile(r"^nonroot:x:65532:$")


def _runs(stage: str) -> list[str]:
    stages: dict[str, list[str]] = {}
    current = ""
    for instruction in INSTRUCTIONS:
        if instruction.startswith("FROM "):
            current = instruction.split(" AS ")[-1] if " AS " in instruction else ""
        stages.setdefault(current, []).append(instruction)
    return [i.removeprefix("RUN ") for i in stages[stage] if i.startswith("RUN ")]


def test_no_syntax_frontend_pulled_by_tag() -> None:
    for line in DOCKERFILE.splitlines():
        if re.match(r"#\s*syntax\s*=", line):
            assert "@sha256:" in line, f"unpinned frontend: {line}"


def test_every_base_image_is_pinned_by_digest() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert default is not None
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default.group(1))
    for instruction in INSTRUCTIONS:
        if instruction.startswith("FROM "):
            base = instruction.split()[1]
            assert base == "${PYTHON_IMAGE}" or base in {"build", "base"}, instruction


def test_uv_is_installed_by_hash_at_the_makefiles_version() -> None:
    (install,) = [run for run in _runs("build") if run.startswith("pip install")]
    assert "--require-hashes" in install
    assert "--no-deps" in install
    requirements = (REPO / "docker" / "uv-requirements.txt").read_text()
    pins = re.findall(r"^([a-z0-9-]+)==(\S+)", requirements, re.MULTILINE)
    makefile_version = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert makefile_version is not None
    assert pins == [("uv", makefile_version.group(1))]
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", requirements)) >= 2


def test_hatchling_comes_from_the_lock() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (project,) = [p for p in lock["package"] if p["name"] == "scalekeeper"]
    assert [dep["name"] for dep in project["dev-dependencies"]["build"]] == ["hatchling"]
    (hatchling,) = [p for p in lock["package"] if p["name"] == "hatchling"]
    assert all(wheel["hash"].startswith("sha256:") for wheel in hatchling["wheels"])
    dependencies, *project_build = [run for run in _runs("build") if run.startswith("uv sync")]
    assert "--group build" in dependencies
    assert "--no-install-project" in dependencies
    # The project itself: built offline with the locked hatchling (no isolated, unpinned build
    # environment), the flags `make build` uses too; the second sync drops the build group.
    (build_and_trim,) = project_build
    with_group, exact = build_and_trim.split(" && ")
    for sync in (with_group, exact):
        assert "--offline" in sync
        assert set(image.RUNTIME_SYNC) <= set(sync.split()[1:]), sync
    assert "--group build" in with_group
    assert "--group" not in exact


def test_source_date_epoch_reaches_the_build() -> None:
    assert re.search(r"^ARG SOURCE_DATE_EPOCH=\d+$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^ENV SOURCE_DATE_EPOCH=\$\{SOURCE_DATE_EPOCH\}", DOCKERFILE, re.MULTILINE)


def test_the_docker_image_has_passwd_and_group_entries_for_its_user() -> None:
    written = {"/etc/passwd": [], "/etc/group": []}
    for run in _runs("base"):
        for line, path in re.findall(r"echo '([^']*)' >> (/etc/\w+)", run):
            written[path].append(line)
    assert [PASSWD_LINE.match(line) is not None for line in written["/etc/passwd"]] == [True]
    assert [GROUP_LINE.match(line) is not None for line in written["/etc/group"]] == [True]
    assert "USER 65532:65532" in INSTRUCTIONS


def test_targets_match_the_builder_and_production_is_the_default() -> None:
    stages = [i.split(" AS ")[-1] for i in INSTRUCTIONS if i.startswith("FROM ")]
    assert {flavor.dockerfile_target for flavor in image.FLAVORS.values()} <= set(stages)
    assert stages[-1] == image.FLAVORS["image"].dockerfile_target


def test_every_copied_path_is_in_the_build_context() -> None:
    admitted = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] == "!"]
    for instruction in INSTRUCTIONS:
        if instruction.startswith("COPY ") and "--from=" not in instruction:
            *sources, _target = [word for word in instruction.split()[1:] if not word.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), source
                assert any(source == a or source.startswith(a + "/") for a in admitted), f"{source} not admitted"


def _evaluate_nix_images() -> dict:
    binary = shutil.which("nix-instantiate")
    if binary is None:
        pytest.fail("nix-instantiate not found: `apt-get install nix-bin` (Debian) or install Nix")
    # nixpkgs' builders replaced by functions that return their arguments.
    expression = f"""
      import {REPO}/nix/image.nix {{
        pkgs = {{
          dockerTools = {{
            buildLayeredImage = args: args;
            fakeNss.override = args: {{ fakeNss = args; }};
          }};
          cacert = "/cacert";
          busybox = "busybox";
        }};
        lib = {{ }};
        runtimeEnv = "runtime-env";
        version = "0.0.0";
        root = "/repo";
      }}
    """
    result = subprocess.run(
        [binary, "--eval", "--strict", "--json", "--expr", expression], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("flavor", sorted(image.FLAVORS))
def test_the_nix_images_have_passwd_and_group_entries_for_their_user(flavor: str) -> None:
    built = _evaluate_nix_images()[image.FLAVORS[flavor].flake_output]
    (nss,) = [item["fakeNss"] for item in built["contents"] if isinstance(item, dict) and "fakeNss" in item]
    assert [PASSWD_LINE.match(line) is not None for line in nss["extraPasswdLines"]] == [True]
    assert [GROUP_LINE.match(line) is not None for line in nss["extraGroupLines"]] == [True]
    assert built["config"]["User"] == "65532:65532"
    assert built["created"] == "1970-01-01T00:00:01Z"


def test_the_dev_stage_runs_the_reloader_on_sources_the_user_can_write() -> None:
    assert "chown 65532:65532 /app/python" in " ".join(_runs("dev"))
    (entrypoint,) = [i for i in INSTRUCTIONS if i.startswith("ENTRYPOINT") and "dev-reloader" in i]
    command = json.loads(entrypoint.removeprefix("ENTRYPOINT "))
    assert command[1:5] == ["/app/dev-reloader.py", "--watch", "/app/python", "--"]
    assert command[-2:] == ["-m", "scalekeeper"]
