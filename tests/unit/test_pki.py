"""The dev PKI issues what the control plane, `make certs` and the TLS tests rely on."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scalekeeper_dev import devcerts, kubeconfig, pki


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("test-ca")


def _verify(ca: pki.CertificateAuthority, issued: pki.Issued, *, at: dt.datetime | None = None) -> None:
    """Chain validation with cryptography's verifier (raises on failure)."""
    from cryptography.x509.verification import PolicyBuilder, Store

    policy = PolicyBuilder().store(Store([ca.cert])).time(at or dt.datetime.now(dt.UTC))
    policy.build_client_verifier().verify(issued.cert, [])


def test_ca_is_a_self_signed_ca(ca: pki.CertificateAuthority) -> None:
    assert ca.cert.issuer == ca.cert.subject
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.cert.verify_directly_issued_by(ca.cert)


def test_client_cert_chains_to_ca_and_carries_identity(ca: pki.CertificateAuthority) -> None:
    issued = ca.issue_client("alice", organizations=("team-a", "team-b"), uris=("spiffe://scalekeeper.dev/writer",))
    issued.cert.verify_directly_issued_by(ca.cert)
    _verify(ca, issued)
    subject = issued.cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["team-a", "team-b"]
    sans = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://scalekeeper.dev/writer"]
    usage = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_server_cert_has_dns_and_ip_sans(ca: pki.CertificateAuthority) -> None:
    issued = ca.issue_server("api", dns_names=("localhost", "api.example"), ip_addresses=("127.0.0.1", "::1"))
    issued.cert.verify_directly_issued_by(ca.cert)
    sans = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "api.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_expired_cert_is_expired(ca: pki.CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    issued = ca.issue_client(
        "old",
        uris=("spiffe://scalekeeper.dev/old",),  # the verifier's client policy requires a SAN
        not_before=now - dt.timedelta(days=2),
        not_after=now - dt.timedelta(days=1),
    )
    assert issued.cert.not_valid_before_utc < issued.cert.not_valid_after_utc < now
    with pytest.raises(x509.verification.VerificationError):
        _verify(ca, issued)


def test_cert_from_another_ca_does_not_chain(ca: pki.CertificateAuthority) -> None:
    # Same CA name, different key: only the signature tells them apart.
    impostor = pki.CertificateAuthority.create("test-ca")
    issued = impostor.issue_client("mallory", uris=("spiffe://scalekeeper.dev/mallory",))
    with pytest.raises(InvalidSignature):
        issued.cert.verify_directly_issued_by(ca.cert)
    with pytest.raises(x509.verification.VerificationError):
        _verify(ca, issued)


def test_validity_must_not_end_before_it_starts(ca: pki.CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="before it starts"):
        ca.issue_client("x", not_before=now, not_after=now - dt.timedelta(seconds=1))


def test_written_files_load_into_ssl_and_back(tmp_path: Path, ca: pki.CertificateAuthority) -> None:
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    loaded = pki.CertificateAuthority.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert loaded.cert == ca.cert
    issued = loaded.issue_server("s")
    issued.write(tmp_path / "s.crt", tmp_path / "s.key")
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    context.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")


def test_an_rsa_ca_loads_and_issues(tmp_path: Path) -> None:
    # kind's (kubeadm's) CA key is RSA.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    base = pki.CertificateAuthority.create("ec-ca")
    rsa_ca = pki.CertificateAuthority(pki.Issued(base.cert, rsa_key))
    rsa_ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    loaded = pki.CertificateAuthority.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert isinstance(loaded.issued.key, rsa.RSAPrivateKey)
    assert isinstance(loaded.issue_client("bob").key, ec.EllipticCurvePrivateKey)


def test_write_dev_certs_writes_the_brief_layout_and_keeps_it(tmp_path: Path) -> None:
    assert devcerts.write_dev_certs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(devcerts.DEV_CERT_FILES)
    ca = pki.CertificateAuthority.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    for role, (common_name, uri) in devcerts.DEV_IDENTITIES.items():
        cert = x509.load_pem_x509_certificate((tmp_path / f"{role}.crt").read_bytes())
        cert.verify_directly_issued_by(ca.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    before = (tmp_path / "ca.crt").read_bytes()
    assert not devcerts.write_dev_certs(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert devcerts.write_dev_certs(tmp_path, force=True)
    assert (tmp_path / "ca.crt").read_bytes() != before


def test_kubeconfig_round_trip(tmp_path: Path, ca: pki.CertificateAuthority) -> None:
    client = ca.issue_client("alice", organizations=("g",))
    path = kubeconfig.write_kubeconfig(
        tmp_path / "kc",
        server="https://127.0.0.1:6443",
        ca_pem=ca.cert_pem,
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
    )
    assert path.stat().st_mode & 0o077 == 0
    info = kubeconfig.read_cluster_info(path)
    assert info.server == "https://127.0.0.1:6443"
    assert info.ca_pem == ca.cert_pem
    with pytest.raises(ValueError, match="needs its key"):
        kubeconfig.write_kubeconfig(tmp_path / "bad", server="s", ca_pem=b"", client_cert_pem=b"x")
