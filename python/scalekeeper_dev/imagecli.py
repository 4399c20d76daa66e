"""`python -m scalekeeper_dev image|build`: what `make image`, `make build` and Tilt run.

The selection lives in :mod:`scalekeeper_dev.image`; this only turns
arguments into a request and prints the one-line reason for the choice.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from scalekeeper_dev import image


def add_commands(commands: argparse._SubParsersAction) -> None:
    build_image = commands.add_parser("image", help="build the image archive (Nix >= 2.18 with flakes, else docker)")
    build_image.add_argument("--flavor", choices=sorted(image.FLAVORS), default="image")
    build_image.add_argument("--archive", type=Path, default=Path(".dev/image.tar"))
    build_image.add_argument("--ref", help="name:tag for the image (Tilt's $EXPECTED_REF); default: content-derived")
    build_image.add_argument("--ref-file", type=Path, help="write the image's ref to this file")
    build_image.add_argument("--builder", default=os.environ.get("SCALEKEEPER_IMAGE_BUILDER") or None)
    build_image.add_argument("--nix", default="nix")
    build_image.set_defaults(func=cmd_image)
    build_app = commands.add_parser("build", help="build the runtime virtualenv (Nix, else uv from the lock)")
    build_app.add_argument("--nix", default="nix")
    build_app.add_argument("--uv", default="uv")
    build_app.set_defaults(func=cmd_build)


def cmd_image(args: argparse.Namespace) -> int:
    try:
        backend, why = image.select(image.backends(args.nix), args.builder)
    except image.NoBuilderError as error:
        print(error, file=sys.stderr)
        return 1
    print(why, flush=True)
    # Absolute: the builders run in the repository, whatever the caller's directory.
    request = image.ImageRequest(image.FLAVORS[args.flavor], args.archive.absolute(), args.ref)
    try:
        ref = image.build(backend, request)
    except subprocess.CalledProcessError as error:
        print(f"{backend.name} build failed (exit {error.returncode}): {' '.join(error.cmd)}", file=sys.stderr)
        return 1
    if args.ref_file:
        args.ref_file.write_text(ref + "\n")
    print(f"image: {ref} ({args.archive})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    nix = image.nix_availability(args.nix)
    if nix.usable:
        print(f"app builder: nix ({nix.reason}): ./result", flush=True)
    else:
        print(f"app builder: uv, into {image.RUNTIME_VENV} (not nix: {nix.reason})", flush=True)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(image.RUNTIME_VENV)}
    for argv in image.app_commands(nix.usable, args.nix, args.uv):
        if subprocess.run(argv, check=False, cwd=image.REPO, env=env).returncode != 0:
            print(f"failed: {' '.join(argv)}", file=sys.stderr)
            return 1
    return 0
