"""CLI commands of the real node: ``node-support`` and ``node-load-image``.

``make test-delivery`` asks ``node-support`` whether this host can run a node
(it prints the reason when not), and ``make deploy CLUSTER=local`` loads the
image with ``node-load-image``, as ``kind load image-archive`` does on kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scalekeeper_dev.node import configs, host, realnode

NODE_DIR = "cluster/node"  # under the dev directory, beside the control plane's files


def node_files(dev_dir: Path) -> configs.NodeFiles:
    return configs.NodeFiles((dev_dir / NODE_DIR).resolve())


def cmd_node_support(_args: argparse.Namespace) -> int:
    reason = host.unsupported_reason()
    if reason is not None:
        print(reason)
        return 1
    return 0


def cmd_node_load_image(args: argparse.Namespace) -> int:
    try:
        realnode.import_image(node_files(Path(args.dev_dir)), Path(args.archive))
    except realnode.NodeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"loaded {args.archive} into the real node's containerd")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    support = commands.add_parser("node-support", help="exit 0 if this host can run a real node, else print why")
    support.set_defaults(func=cmd_node_support)
    load = commands.add_parser("node-load-image", help="load an image archive into the real node (like kind load)")
    load.add_argument("archive")
    load.add_argument("--dev-dir", default=".dev")
    load.set_defaults(func=cmd_node_load_image)
