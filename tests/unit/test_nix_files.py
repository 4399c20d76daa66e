"""The Nix files parse and flake.lock pins every input to a real-looking revision.

Nix cannot build here (no binary cache, no daemon), so `nix build` and
`nix flake check` are verified elsewhere; what is checked here is that every
.nix file is syntactically valid Nix (nix-instantiate --parse, Debian package
nix-bin) and that flake.lock locks exactly the flake's inputs by rev and
narHash. Whether those pairs are genuine is recorded in nix/README.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NIX_FILES = sorted([REPO / "flake.nix", *(REPO / "nix").glob("*.nix")])
INPUTS = {
    "nixpkgs": ("NixOS", "nixpkgs"),
    "pyproject-nix": ("pyproject-nix", "pyproject.nix"),
    "uv2nix": ("pyproject-nix", "uv2nix"),
    "pyproject-build-systems": ("pyproject-nix", "build-system-pkgs"),
}


@pytest.mark.parametrize("path", NIX_FILES, ids=[str(path.relative_to(REPO)) for path in NIX_FILES])
def test_nix_file_parses(path: Path) -> None:
    binary = shutil.which("nix-instantiate")
    if binary is None:
        pytest.fail("nix-instantiate not found: `apt-get install nix-bin` (Debian) or install Nix")
    result = subprocess.run([binary, "--parse", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_syntax_error_is_caught(tmp_path: Path) -> None:
    binary = shutil.which("nix-instantiate")
    if binary is None:
        pytest.fail("nix-instantiate not found: `apt-get install nix-bin` (Debian) or install Nix")
    broken = tmp_path / "broken.nix"
    broken.write_text("{ a = 1; b = ; }\n")
    assert subprocess.run([binary, "--parse", str(broken)], capture_output=True, check=False).returncode != 0


def test_flake_lock_pins_each_input() -> None:
    lock = json.loads((REPO / "flake.lock").read_text())
    assert lock["version"] == 7
    nodes = lock["nodes"]
    assert set(nodes[lock["root"]]["inputs"]) == set(INPUTS)
    flake = (REPO / "flake.nix").read_text()
    for name, (owner, repo) in INPUTS.items():
        node = nodes[nodes[lock["root"]]["inputs"][name]]
        locked, original = node["locked"], node["original"]
        assert (locked["type"], locked["owner"], locked["repo"]) == ("github", owner, repo)
        assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"]), name
        assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"]), name
        assert (original["owner"], original["repo"]) == (owner, repo)
        url = f"github:{owner}/{repo}" + (f"/{original['ref']}" if "ref" in original else "")
        assert f'"{url}"' in flake, f"flake.nix input {name} should be {url}"
    # Everything follows the one nixpkgs: one Python, one set of libraries.
    for name in ("pyproject-nix", "uv2nix", "pyproject-build-systems"):
        assert nodes[name]["inputs"]["nixpkgs"] == ["nixpkgs"]
