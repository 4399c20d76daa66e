"""The command line of a scalekeeper server run on this machine (``make run``, tests, benchmarks)."""

from __future__ import annotations

import sys

from scalekeeper_dev.devcerts import DevCertFiles


def server_command(certs: DevCertFiles, *flags: str) -> list[str]:
    """``python -m scalekeeper`` on loopback with the certificates in ``certs``; ``flags`` add to or override."""
    return [
        sys.executable,
        "-m",
        "scalekeeper",
        "--bind-address=127.0.0.1",
        f"--tls-cert={certs.server_cert}",
        f"--tls-key={certs.server_key}",
        f"--tls-client-ca={certs.ca_file}",
        *flags,
    ]
