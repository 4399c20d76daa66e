"""Certificates and kubeconfigs of the local control plane's components.

One throw-away CA signs everything, as kubeadm's does: the apiserver's
serving certificate, a client certificate per component whose CN is the
identity the apiserver's bootstrap RBAC policy already grants
(``system:kube-controller-manager``, ``system:kube-scheduler``), and serving
certificates for the components' own health endpoints, so that the harness
checks them with the CA instead of skipping TLS verification. KWOK has no
bootstrap role: its ClusterRole comes from its module (see :mod:`kwok`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scalekeeper_dev import kubeconfig, pki

ADMIN_USER = "scalekeeper-admin"
ADMIN_GROUP = "system:masters"  # bypasses RBAC: the admin can do anything
KWOK_USER = "kwok-controller"
LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CLUSTER_IP_RANGE

# Component -> the user its client certificate names.
COMPONENT_USERS = {
    "kube-controller-manager": "system:kube-controller-manager",
    "kube-scheduler": "system:kube-scheduler",
    "kwok": KWOK_USER,
}
SERVING_COMPONENTS = ("kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class ClusterPki:
    """The files under ``<workdir>/pki``; :meth:`create` writes them all."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def serving_cert(self, component: str) -> Path:
        return self.cert(f"{component}-serving")

    def serving_key(self, component: str) -> Path:
        return self.key(f"{component}-serving")

    def create(self, apiserver_address: str = LOOPBACK) -> pki.CertificateAuthority:
        """Write a fresh CA and every certificate; returns the CA (tests mint more identities with it)."""
        ca = pki.CertificateAuthority.create("scalekeeper-test-kubernetes-ca")
        ca.write(self.ca_cert, self.ca_key)
        ca.issue_server(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=tuple(dict.fromkeys((LOOPBACK, apiserver_address, KUBERNETES_SERVICE_IP))),
        ).write(self.cert("apiserver"), self.key("apiserver"))
        ca.issue_client(ADMIN_USER, organizations=(ADMIN_GROUP,)).write(self.cert("admin"), self.key("admin"))
        for component, user in COMPONENT_USERS.items():
            ca.issue_client(user).write(self.cert(component), self.key(component))
        for component in SERVING_COMPONENTS:
            ca.issue_server(component, dns_names=(), ip_addresses=(LOOPBACK,)).write(
                self.serving_cert(component), self.serving_key(component)
            )
        sa_key = pki.new_private_key()
        self.service_account_key.write_bytes(pki.private_key_pem(sa_key))
        self.service_account_key.chmod(0o600)
        self.service_account_public_key.write_bytes(pki.public_key_pem(sa_key))
        return ca

    def write_kubeconfig(self, path: Path, server: str, name: str) -> Path:
        """A kubeconfig for the client certificate ``name`` (``admin`` or a component)."""
        return kubeconfig.write_kubeconfig(
            path,
            server=server,
            ca_pem=self.ca_cert.read_bytes(),
            client_cert_pem=self.cert(name).read_bytes(),
            client_key_pem=self.key(name).read_bytes(),
        )
