"""Read and rewrite the name of the image in a docker-archive tarball.

Tilt names the image it expects ($EXPECTED_REF), while Nix names it after its
output hash. Renaming is two small JSON files inside the tar (manifest.json
and, when present, the legacy `repositories`), so it is done here instead of
requiring skopeo or a daemon.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path


def ref_of(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        manifest = _read_json(tar, "manifest.json")
    tags = manifest[0].get("RepoTags") or []
    if not tags:
        raise ValueError(f"{archive}: the image has no name (manifest.json has no RepoTags)")
    return tags[0]


def retag(archive: Path, ref: str) -> None:
    """Rename the archive's one image to ``ref`` (name:tag); the archive becomes a regular file."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        raise ValueError(f"{ref!r} is not name:tag")
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(archive) as source, tarfile.open(tmp, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name in ("manifest.json", "repositories") and data is not None:
                content = json.loads(data.read())
                content = (
                    _renamed_manifest(content, ref)
                    if member.name == "manifest.json"
                    else _renamed_repos(content, name, tag)
                )
                payload = json.dumps(content).encode()
                member.size = len(payload)
                data = io.BytesIO(payload)
            target.addfile(member, data)
    # `archive` may be a symlink into the read-only Nix store: replace the link, not its target.
    archive.unlink()
    tmp.rename(archive)


def _renamed_manifest(manifest: list[dict], ref: str) -> list[dict]:
    if len(manifest) != 1:
        raise ValueError(f"expected one image in the archive, found {len(manifest)}")
    return [{**manifest[0], "RepoTags": [ref]}]


def _renamed_repos(repositories: dict[str, dict[str, str]], name: str, tag: str) -> dict[str, dict[str, str]]:
    layer_ids = [layer for tags in repositories.values() for layer in tags.values()]
    return {name: {tag: layer_ids[0]}} if layer_ids else {}


def _read_json(tar: tarfile.TarFile, name: str) -> list[dict]:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"{tar.name}: {name} is not a file")
    return json.loads(member.read())
