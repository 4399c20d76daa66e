"""A throw-away certificate authority for development and tests.

The control plane, ``make certs`` and the tests all need certificates with
precise contents (a client's CN/O is its Kubernetes user/groups; URI SANs are
scalekeeper identities; tests need expired certificates and foreign CAs), so
they are issued here with ``cryptography`` instead of by shelling out to
openssl. Keys are ECDSA P-256: generating them is instantaneous, which keeps a
fresh control plane (a dozen certificates) fast to start, and both Go's TLS
stack and kube-apiserver's service-account signer accept them.

Nothing here is fit for production: no revocation, no key protection.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY = dt.timedelta(days=365)
# Certificates start slightly in the past so that a clock a few seconds behind
# (another process, a VM) does not reject a certificate issued "just now".
_BACKDATE = dt.timedelta(minutes=5)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Keys we issue are ECDSA; a loaded CA (kind's, kubeadm's) is often RSA.
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write PEM files; the key file is readable by its owner only."""
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem)
        _write_private(key_path, self.key_pem)


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, validity: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before if not_before is not None else _now() - _BACKDATE
    end = not_after if not_after is not None else start + _BACKDATE + validity
    if end <= start:
        raise ValueError(f"certificate would end ({end}) before it starts ({start})")
    return start, end


def _subject(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    # Kubernetes reads groups from every O attribute, in order.
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, issued: Issued) -> None:
        self.issued = issued

    @classmethod
    def create(
        cls, common_name: str = "scalekeeper-dev-ca", *, validity: dt.timedelta = DEFAULT_VALIDITY
    ) -> CertificateAuthority:
        key = new_private_key()
        start, end = _validity(None, None, validity)
        name = _subject(common_name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(Issued(cert, key))

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise TypeError(f"{key_path}: only ECDSA and RSA CA keys are supported, got {type(key).__name__}")
        return cls(Issued(cert, key))

    @property
    def cert(self) -> x509.Certificate:
        return self.issued.cert

    @property
    def cert_pem(self) -> bytes:
        return self.issued.cert_pem

    def write(self, cert_path: Path, key_path: Path | None = None) -> None:
        """Write the CA certificate and, if a path is given, its key."""
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem)
        if key_path is not None:
            _write_private(key_path, self.issued.key_pem)

    def _issue(
        self,
        subject: x509.Name,
        *,
        usage: x509.ObjectIdentifier,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str | IPAddress],
        uris: Sequence[str],
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
        validity: dt.timedelta,
    ) -> Issued:
        key = new_private_key()
        start, end = _validity(not_before, not_after, validity)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issued.key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        sans += [x509.UniformResourceIdentifier(uri) for uri in uris]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return Issued(builder.sign(self.issued.key, hashes.SHA256()), key)

    def issue_server(
        self,
        common_name: str,
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str | IPAddress] = ("127.0.0.1", "::1"),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> Issued:
        """A TLS serving certificate; clients verify the DNS/IP SANs, never the CN."""
        return self._issue(
            _subject(common_name),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            uris=(),
            not_before=not_before,
            not_after=not_after,
            validity=validity,
        )

    def issue_client(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        uris: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> Issued:
        """A TLS client certificate.

        For Kubernetes the CN is the user name and each O a group. For
        scalekeeper the identity is the CN plus the URI and DNS SANs. Pass a
        ``not_after`` in the past for an expired certificate.
        """
        return self._issue(
            _subject(common_name, organizations),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            dns_names=dns_names,
            ip_addresses=(),
            uris=uris,
            not_before=not_before,
            not_after=not_after,
            validity=validity,
        )
