"""The checked-in generated code matches proto/ (run `make proto` after editing a .proto)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
GENERATED_DIR = ROOT / "python"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    assert protos, f"no .proto files under {PROTO_DIR}"
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        *(str(p) for p in protos),
    ]
    assert protoc.main(args) == 0
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated
    stale = [str(rel) for rel in generated if (GENERATED_DIR / rel).read_bytes() != (tmp_path / rel).read_bytes()]
    assert not stale, f"out of date, run `make proto`: {stale}"
