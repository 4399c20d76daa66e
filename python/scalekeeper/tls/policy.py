"""The TLS policy both API ports enforce, in one place.

TLS 1.2 is limited to forward-secret AEAD suites (ECDHE key exchange with
AES-GCM or ChaCha20-Poly1305); TLS 1.3 suites are all AEAD already.

The two ports cannot enforce quite the same thing:

* HTTP/JSON (Python's ``ssl``, OpenSSL) requires TLS 1.3 outright, because
  every client we expect on it (curl, Python, Go) speaks it.
* gRPC (grpcio, BoringSSL) has no Python API for a minimum protocol version
  (grpc/grpc#37305); its core default floor is TLS 1.2, so TLS 1.0/1.1 are
  refused, and TLS 1.2 is restricted through the cipher list instead. grpcio
  reads that list from the ``GRPC_SSL_CIPHER_SUITES`` environment variable
  once, when the core initialises, hence ``pin_grpc_cipher_suites()`` must run
  before ``grpc`` is imported (first thing in ``__main__`` and in the test
  conftests).
"""

from __future__ import annotations

import logging
import os
import ssl
import sys

log = logging.getLogger(__name__)

# OpenSSL/BoringSSL names. ECDSA first: the dev and chart certificates are ECDSA.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

GRPC_CIPHER_ENV = "GRPC_SSL_CIPHER_SUITES"
# grpc's own default has the same shape (TLS 1.3 names, then TLS 1.2 names),
# minus ChaCha20 for TLS 1.2; a test negotiates ChaCha20 to prove the pin works.
GRPC_CIPHER_SUITES = ":".join(TLS13_CIPHERS + TLS12_CIPHERS)


def pin_grpc_cipher_suites() -> bool:
    """Set ``GRPC_SSL_CIPHER_SUITES``; returns False when it came too late to take effect.

    Too late means grpc was imported already with a different value: the core
    may have read the variable, so the process keeps grpc's default list
    (which is also ECDHE+AEAD only, just without ChaCha20 on TLS 1.2).
    """
    already = os.environ.get(GRPC_CIPHER_ENV)
    os.environ[GRPC_CIPHER_ENV] = GRPC_CIPHER_SUITES
    if "grpc" in sys.modules and already != GRPC_CIPHER_SUITES:
        log.warning("%s set after grpc was imported; it may not apply", GRPC_CIPHER_ENV)
        return False
    return True


def server_ssl_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """The HTTP/JSON port's context: TLS 1.3 only, client certificate required.

    Raises ``ssl.SSLError``/``OSError`` when a file is missing, unreadable, or
    the key does not match the certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # Only matters if the minimum is ever lowered to 1.2: keep the same policy as gRPC.
    context.set_ciphers(":".join(TLS12_CIPHERS))
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cafile=ca_file)
    return context
