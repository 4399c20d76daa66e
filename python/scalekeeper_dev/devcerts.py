"""The development certificates: ``make certs``, ``make run``, the tests and ``make bench`` share one layout.

A CA, a server certificate for loopback and the in-cluster names, and one
client certificate per role of the brief (writer, reader), each with the
SPIFFE URI that scalekeeper authorizes by. Issued by ``pki``; this module only
names the files and the identities, so every caller agrees on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scalekeeper_dev.pki import CertificateAuthority

# The development identities of the brief: `make certs` and `make run` use them.
DEV_IDENTITIES = {
    "writer": ("scalekeeper-writer", "spiffe://scalekeeper.dev/writer"),
    "reader": ("scalekeeper-reader", "spiffe://scalekeeper.dev/reader"),
}
DEV_CERT_FILES = (
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "writer.crt",
    "writer.key",
    "reader.crt",
    "reader.key",
)


@dataclass
class DevCertFiles:
    """The paths of the ``write_dev_certs`` layout in one directory."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def client(self, role: str) -> tuple[Path, Path]:
        """Certificate and key of a client role (``writer``, ``reader``)."""
        return self.directory / f"{role}.crt", self.directory / f"{role}.key"


def write_dev_certs(directory: Path, *, server_dns_names: Sequence[str] = (), force: bool = False) -> bool:
    """Write the development CA, server and client certificates into ``directory``.

    Existing files are kept unless ``force`` (a running server reloads its
    certificates from these files, and replacing the CA would break clients
    that already trust it). Returns whether new files were written.
    """
    if not force and all((directory / name).exists() for name in DEV_CERT_FILES):
        return False
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create("scalekeeper-dev-ca")
    ca.write(directory / "ca.crt", directory / "ca.key")
    server = ca.issue_server(
        "scalekeeper",
        dns_names=("localhost", "scalekeeper", *server_dns_names),
        ip_addresses=("127.0.0.1", "::1"),
    )
    server.write(directory / "server.crt", directory / "server.key")
    for role, (common_name, uri) in DEV_IDENTITIES.items():
        ca.issue_client(common_name, uris=(uri,)).write(directory / f"{role}.crt", directory / f"{role}.key")
    return True
