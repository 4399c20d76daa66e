"""Keeps docs/design.md honest about the parts a machine can check.

The design document quotes the API in full so that reviewers read one file;
a quoted API that drifts from the real one is worse than none, so the quote
must be byte-identical to proto/. The section headings are the structure the
reviewers were promised; losing one in an edit should fail CI, not a review.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
PROTO_ROOT = ROOT / "proto"

# A fenced block opened by exactly ```proto on its own line; the body is taken verbatim.
_PROTO_FENCE = re.compile(r"^```proto[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

SECTIONS = (
    "Approach and scope",
    "API",
    "Caching",
    "Reconciliation, conflicts and automation",
    "Security",
    "Pod lifecycle",
    "CLI UX and developer workflow",
    "Build and release",
    "Edge cases",
)


def proto_blocks(markdown: str) -> list[str]:
    return _PROTO_FENCE.findall(markdown)


def headings(markdown: str) -> list[str]:
    """Markdown ATX headings (any level), without the hashes and an optional "N." number."""
    found = []
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        match = None if in_fence else re.match(r"^#{1,6}\s+(?:\d+\.\s+)?(.+?)\s*#*\s*$", line)
        if match:
            found.append(match.group(1))
    return found


@pytest.fixture(scope="module")
def design() -> str:
    return DESIGN.read_text(encoding="utf-8")


def test_quoted_proto_is_byte_identical_to_the_proto_files(design: str) -> None:
    files = sorted(PROTO_ROOT.rglob("*.proto"), key=lambda p: p.relative_to(PROTO_ROOT).as_posix())
    assert files, "no .proto files under proto/"
    expected = "".join(path.read_bytes().decode("utf-8") for path in files)
    blocks = proto_blocks(design)
    assert blocks, "docs/design.md has no ```proto block"
    # Compare bytes, not normalised text: a reviewer must be able to trust every character.
    assert "".join(blocks).encode("utf-8") == expected.encode("utf-8"), (
        "the ```proto block(s) in docs/design.md differ from "
        + ", ".join(str(p.relative_to(ROOT)) for p in files)
        + "; paste the file(s) again"
    )


@pytest.mark.parametrize("section", SECTIONS)
def test_section_heading_exists(design: str, section: str) -> None:
    assert section in headings(design), f"docs/design.md lacks the heading {section!r}"


def test_sections_appear_in_the_promised_order(design: str) -> None:
    found = [h for h in headings(design) if h in SECTIONS]
    assert found == list(SECTIONS)


def test_proto_fence_extraction_takes_the_body_verbatim() -> None:
    # The unhappy paths of the checker itself: other fences are ignored and
    # trailing blank lines inside the fence are kept, so a mangled paste fails.
    markdown = '```python\nx = 1\n```\n```proto\nsyntax = "proto3";\n\n```\n'
    assert proto_blocks(markdown) == ['syntax = "proto3";\n\n']
    assert proto_blocks("```protobuf\nmessage A {}\n```\n") == []


def test_headings_ignore_fenced_code() -> None:
    markdown = "## 1. API\n```proto\n# not a heading\n```\n### Edge cases\n"
    assert headings(markdown) == ["API", "Edge cases"]
