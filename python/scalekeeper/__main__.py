"""``python -m scalekeeper``: pin the gRPC TLS policy, then run the app.

The cipher pin must come before anything imports grpc (see
``scalekeeper.tls.policy``), which is why this module imports nothing else first.
"""

from __future__ import annotations

import os
import sys

from scalekeeper.tls import policy

policy.pin_grpc_cipher_suites()
# grpc core logs every failed handshake at INFO, unstructured; keep stderr JSON-only
# unless an operator asks for it (GRPC_VERBOSITY=INFO to debug mTLS).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def main() -> int:
    from scalekeeper.app import main as run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
