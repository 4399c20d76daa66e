"""Server certificate, key and client CA, reloaded from their files when they change.

Certificates are rotated by replacing files (cert-manager, a Kubernetes Secret
volume swapping its ``..data`` symlink), and a restart would drop every watch
stream, so both API ports pick up new files on the next handshake instead:

* gRPC: ``grpc.dynamic_ssl_server_credentials`` calls a fetcher before every
  handshake; ours stats the files and returns a new configuration only when
  they changed (``None`` keeps the current one).
* HTTP: asyncio wraps every accepted connection with ``SSLContext.wrap_bio``;
  ``ReloadingSSLContext`` forwards that call to a context freshly built from
  the files, so the new certificate, key AND client CA all apply. (An
  ``sni_callback`` swapping ``SSLObject.context`` would also work for the
  certificate, but whether OpenSSL then verifies against the new context's
  trust store is subtle; delegating the whole context is not.)

A change is detected by (device, inode, mtime, size) of each file, which
costs three ``stat`` calls per handshake. Files replaced one by one can be
caught half-way (new certificate, old key): such a set fails validation, the
previous material stays in use, and the next handshake tries again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalekeeper.tls import policy

log = logging.getLogger(__name__)

# Per file: (st_dev, st_ino, st_mtime_ns, st_size), or None when it cannot be stat'ed.
FileStamp = tuple[int, int, int, int] | None


def stamp(path: Path) -> FileStamp:
    try:
        st = os.stat(path)  # follows symlinks: a Secret volume swaps the target
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path
    client_ca: Path

    def stamps(self) -> tuple[FileStamp, FileStamp, FileStamp]:
        return (stamp(self.cert), stamp(self.key), stamp(self.client_ca))


@dataclass(frozen=True)
class Material:
    """One consistent, validated set of PEM bytes and the ssl context built from it."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes
    ssl_context: ssl.SSLContext
    generation: int


class ChangeDetector:
    """Tells whether a set of files changed since the last call that accepted them (pure logic)."""

    def __init__(self, read_stamps: Callable[[], tuple[FileStamp, ...]]) -> None:
        self._read_stamps = read_stamps
        self._accepted: tuple[FileStamp, ...] | None = None
        self._rejected: tuple[FileStamp, ...] | None = None

    def changed(self) -> tuple[FileStamp, ...] | None:
        """The new stamps when the files differ from the accepted and the last rejected ones, else None."""
        current = self._read_stamps()
        if current in (self._accepted, self._rejected):
            return None
        return current

    def accept(self, stamps: tuple[FileStamp, ...]) -> None:
        self._accepted = stamps
        self._rejected = None

    def reject(self, stamps: tuple[FileStamp, ...]) -> None:
        # Remembered so that a broken set is not re-read (and re-logged) on every handshake.
        self._rejected = stamps


class ReloadingCertificates:
    """The current ``Material``; ``refresh()`` reloads it when the files changed.

    Thread-safe: grpc calls the fetcher from its own threads while the HTTP
    port refreshes on the event loop.
    """

    def __init__(self, files: CertificateFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._detector = ChangeDetector(files.stamps)
        stamps = files.stamps()
        # At start-up a bad set is fatal: fail loudly instead of serving nothing.
        self._material = self._load(generation=1)
        self._detector.accept(stamps)

    @property
    def material(self) -> Material:
        return self._material

    def refresh(self) -> Material:
        """Reload if the files changed and form a valid set; returns the material in use."""
        with self._lock:
            stamps = self._detector.changed()
            if stamps is None:
                return self._material
            try:
                material = self._load(generation=self._material.generation + 1)
            except (OSError, ssl.SSLError, ValueError) as error:
                log.warning(
                    "new TLS files are not usable yet, keeping the previous ones",
                    extra={"error": str(error), "files": [str(p) for p in self._paths()]},
                )
                self._detector.reject(stamps)
                return self._material
            if self.files.stamps() != stamps:
                # Changed while we read: try again on the next handshake.
                return self._material
            self._detector.accept(stamps)
            self._material = material
            log.info("reloaded TLS certificate files", extra={"generation": material.generation})
            return material

    def _paths(self) -> tuple[Path, Path, Path]:
        return (self.files.cert, self.files.key, self.files.client_ca)

    def _load(self, generation: int) -> Material:
        cert, key, ca = (p.read_bytes() for p in self._paths())
        # Building the context validates the set: PEM syntax, key matches certificate, CA parses.
        context = policy.server_ssl_context(str(self.files.cert), str(self.files.key), str(self.files.client_ca))
        if not ca.strip():
            raise ValueError(f"{self.files.client_ca} is empty")
        return Material(cert, key, ca, context, generation)


class ReloadingSSLContext(ssl.SSLContext):
    """An SSLContext for ``loop.create_server`` that wraps each connection with the current files' context.

    Only ``wrap_bio`` (what asyncio calls per connection) is forwarded; the
    outer object's own settings are never used to handshake.
    """

    _certificates: ReloadingCertificates

    def __new__(cls, certificates: ReloadingCertificates) -> ReloadingSSLContext:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        context._certificates = certificates
        return context

    def __init__(self, certificates: ReloadingCertificates) -> None:
        # ssl.SSLContext.__init__ takes the protocol; everything happened in __new__.
        pass

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):  # type: ignore[no-untyped-def]
        current = self._certificates.refresh().ssl_context
        return current.wrap_bio(
            incoming, outgoing, server_side=server_side, server_hostname=server_hostname, session=session
        )

    def wrap_socket(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self._certificates.refresh().ssl_context.wrap_socket(*args, **kwargs)
