"""Restart a command when Python files under a directory change (Tilt dev image only).

Tilt's live_update copies edited sources into the running container; the
server then has to restart to load them. Tilt's own restart helper needs a
Docker build on top of the image, and a container restart would discard the
synced files, so this tiny supervisor, the dev image's entrypoint, polls the
tree and restarts its child in place. SIGTERM/SIGINT are forwarded so the
server's drain still runs when the pod stops.

Standard library only: it runs on the image's interpreter before anything is
imported from the synced tree.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5
# A sync writes many files; wait until the tree has been quiet this long.
SETTLE_SECONDS = 1.0


def snapshot(root: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in root.rglob("*.py") if path.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")

    stopping = False
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    seen = snapshot(args.watch)
    changed_at: float | None = None
    while True:
        code = child.poll()
        if code is not None and stopping:
            return code
        # A child that crashed (say, on a syntax error just synced) waits for
        # the next change; exiting would make the kubelet restart the
        # container from the image and drop every synced file.
        time.sleep(POLL_SECONDS)
        current = snapshot(args.watch)
        if current != seen:
            seen, changed_at = current, time.monotonic()
        if changed_at is not None and time.monotonic() - changed_at >= SETTLE_SECONDS and not stopping:
            print("dev-reloader: sources changed, restarting", file=sys.stderr, flush=True)
            if child.poll() is None:
                child.terminate()
                child.wait()
            child = subprocess.Popen(command)
            changed_at = None


if __name__ == "__main__":
    sys.exit(main())
