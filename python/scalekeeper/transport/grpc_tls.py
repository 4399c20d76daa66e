"""gRPC server credentials that follow the certificate files (see ``scalekeeper.tls.reloading``)."""

from __future__ import annotations

import logging

import grpc

from scalekeeper.tls.reloading import Material, ReloadingCertificates

log = logging.getLogger(__name__)


def grpc_server_credentials(certificates: ReloadingCertificates) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate and follow the files.

    grpc calls ``fetch`` before every handshake, which is how a rotated
    certificate (``ReloadingCertificates``) reaches new connections.
    """

    def configuration(material: Material) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.private_key, material.cert_chain)], root_certificates=material.client_ca
        )

    served = [certificates.material.generation]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by grpc before every handshake; an exception here would fail the handshake.
        try:
            material = certificates.refresh()
            if material.generation == served[0]:
                return None
            served[0] = material.generation
            return configuration(material)
        except Exception:
            log.exception("TLS certificate fetcher failed; keeping the current certificates")
            return None

    return grpc.dynamic_ssl_server_credentials(
        configuration(certificates.material), fetch, require_client_authentication=True
    )
