"""The pod sandbox ("pause") image, built here: no registry is reachable.

It is Kubernetes' own ``build/pause/linux/pause.c`` from the pinned module,
compiled statically and put alone in an image; the archive is cached next to
the tools, so it is built once per Kubernetes version.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from scalekeeper_dev import buildah, toolchain, toolpins
from scalekeeper_dev.node import configs


def archive() -> Path:
    """The pause image as a docker-archive, built on first use."""
    path = toolpins.CACHE_DIR / "images" / f"pause-{toolpins.KUBERNETES_VERSION}.tar"
    if path.exists():
        return path
    source = toolchain.module_dir("kubernetes") / "build" / "pause" / "linux" / "pause.c"
    with tempfile.TemporaryDirectory(prefix="scalekeeper-pause-") as scratch:
        binary = Path(scratch) / "pause"
        subprocess.run(
            [
                "gcc",
                "-Os",
                "-Wall",
                "-static",
                f"-DVERSION={toolpins.KUBERNETES_VERSION}",
                "-o",
                str(binary),
                str(source),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(["strip", str(binary)], check=True, capture_output=True)
        partial = path.with_suffix(".partial")
        buildah.build_static_image(configs.PAUSE_IMAGE, partial, binary, "/pause")
        partial.rename(path)
    return path
