"""Certificate files reloaded on change: detection, validation, and that a new CA really applies."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest

from scalekeeper.tls import policy
from scalekeeper.tls.reloading import (
    CertificateFiles,
    ChangeDetector,
    ReloadingCertificates,
    ReloadingSSLContext,
    stamp,
)
from scalekeeper_dev import pki


def write_set(directory: Path, ca: pki.CertificateAuthority, server_cn: str = "server-1") -> CertificateFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca.write(directory / "ca.crt.new")
    os.replace(directory / "ca.crt.new", directory / "ca.crt")
    issued = ca.issue_server(server_cn)
    issued.write(directory / "tls.crt.new", directory / "tls.key.new")
    os.replace(directory / "tls.crt.new", directory / "tls.crt")
    os.replace(directory / "tls.key.new", directory / "tls.key")
    return CertificateFiles(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")


def test_change_detector() -> None:
    stamps = [(1, 1, 1, 1)]
    detector = ChangeDetector(lambda: tuple(stamps))
    first = detector.changed()
    assert first == ((1, 1, 1, 1),)
    detector.accept(first)
    assert detector.changed() is None
    stamps[0] = (1, 2, 1, 1)
    second = detector.changed()
    assert second is not None
    detector.reject(second)
    assert detector.changed() is None  # a rejected set is not retried until it changes again
    stamps[0] = (1, 3, 1, 1)
    assert detector.changed() == ((1, 3, 1, 1),)


def test_stamp_of_missing_file_is_none(tmp_path: Path) -> None:
    assert stamp(tmp_path / "nope") is None
    (tmp_path / "f").write_text("x")
    assert stamp(tmp_path / "f") is not None


def test_reload_on_change_and_not_otherwise(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority.create()
    files = write_set(tmp_path, ca, "server-1")
    certificates = ReloadingCertificates(files)
    first = certificates.material
    assert certificates.refresh() is first
    write_set(tmp_path, ca, "server-2")
    second = certificates.refresh()
    assert second.generation == first.generation + 1
    assert second.cert_chain != first.cert_chain
    assert certificates.refresh() is second


def test_broken_files_keep_the_previous_material(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority.create()
    files = write_set(tmp_path, ca)
    certificates = ReloadingCertificates(files)
    first = certificates.material
    # Half-way through a rotation: a new certificate with the old key.
    ca.issue_server("other").write(tmp_path / "x.crt", tmp_path / "x.key")
    os.replace(tmp_path / "x.crt", files.cert)
    assert certificates.refresh() is first
    files.client_ca.write_text("not a certificate")
    assert certificates.refresh() is first
    # Completing the rotation is picked up.
    write_set(tmp_path, ca, "server-3")
    assert certificates.refresh().generation == first.generation + 1


def test_start_up_with_bad_files_fails(tmp_path: Path) -> None:
    with pytest.raises((OSError, ssl.SSLError)):
        ReloadingCertificates(CertificateFiles(tmp_path / "a", tmp_path / "b", tmp_path / "c"))


def _client_context(ca: pki.CertificateAuthority, client: pki.Issued, directory: Path) -> ssl.SSLContext:
    directory.mkdir(parents=True, exist_ok=True)
    ca.write(directory / "ca.crt")
    client.write(directory / "c.crt", directory / "c.key")
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    context.load_cert_chain(directory / "c.crt", directory / "c.key")
    return context


async def _handshake(port: int, context: ssl.SSLContext) -> str:
    """Connect, and return the server certificate's CN; raises if the server refuses us."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        # With TLS 1.3 the server checks the client certificate after the client
        # finished: a refusal shows up on the first read.
        data = await asyncio.wait_for(reader.readline(), 10)
        if not data:
            raise ConnectionResetError("closed by the server")
        peer = writer.get_extra_info("peercert")
        return next(value for rdn in peer["subject"] for key, value in rdn if key == "commonName")
    finally:
        writer.close()


def test_http_context_follows_new_server_certificate_and_ca(tmp_path: Path) -> None:
    async def scenario() -> None:
        old_ca, new_ca = pki.CertificateAuthority.create("old-ca"), pki.CertificateAuthority.create("new-ca")
        files = write_set(tmp_path / "server", old_ca, "server-old")
        context = ReloadingSSLContext(ReloadingCertificates(files))

        async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        old_client = _client_context(old_ca, old_ca.issue_client("c"), tmp_path / "old-client")
        new_client = _client_context(new_ca, new_ca.issue_client("c"), tmp_path / "new-client")
        async with server:
            assert await _handshake(port, old_client) == "server-old"
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _handshake(port, new_client)

            write_set(tmp_path / "server", new_ca, "server-new")
            assert await _handshake(port, new_client) == "server-new"
            # The old CA's client certificates are refused: the CA applies, not just the certificate.
            old_client.check_hostname = False
            old_client.verify_mode = ssl.CERT_NONE
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _handshake(port, old_client)

    asyncio.run(scenario())


def test_http_context_refuses_tls12(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority.create()
    files = write_set(tmp_path, ca)
    server_context = policy.server_ssl_context(str(files.cert), str(files.key), str(files.client_ca))
    assert server_context.minimum_version == ssl.TLSVersion.TLSv1_3

    async def scenario() -> None:
        async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello\n")
            writer.close()

        server = await asyncio.start_server(
            greet, "127.0.0.1", 0, ssl=ReloadingSSLContext(ReloadingCertificates(files))
        )
        port = server.sockets[0].getsockname()[1]
        client = _client_context(ca, ca.issue_client("c"), tmp_path / "client")
        async with server:
            assert await _handshake(port, client) == "server-1"
            client.maximum_version = ssl.TLSVersion.TLSv1_2
            # asyncio reports the server's protocol_version alert as a reset, or as the alert.
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _handshake(port, client)

    asyncio.run(scenario())


def test_grpc_cipher_list_is_ecdhe_aead_only() -> None:
    for name in policy.GRPC_CIPHER_SUITES.split(":"):
        assert name.startswith(("TLS_", "ECDHE-")), name
        assert "GCM" in name or "CHACHA20" in name, name
