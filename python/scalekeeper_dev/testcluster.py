"""The Kubernetes cluster tests run against: the harness's own, or an existing one (kind).

Tests must not care which: both give an admin kubeconfig, kubeconfigs for an
arbitrary user/groups (a client certificate from the cluster's client CA) and
for a ServiceAccount (a TokenRequest token). Only fault injection (restart or
pause the apiserver, compact etcd) needs the local :class:`ControlPlane`.

For an existing cluster, client certificates need its client CA; for kind::

    docker cp kind-control-plane:/etc/kubernetes/pki/ca.crt .dev/kind-ca.crt
    docker cp kind-control-plane:/etc/kubernetes/pki/ca.key .dev/kind-ca.key
    SCALEKEEPER_TEST_KUBECONFIG=$HOME/.kube/config \\
    SCALEKEEPER_TEST_CLIENT_CA_CERT=.dev/kind-ca.crt SCALEKEEPER_TEST_CLIENT_CA_KEY=.dev/kind-ca.key \\
      make test-integration
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from scalekeeper_dev import kubeconfig, pki
from scalekeeper_dev.controlplane import ControlPlane

ENV_KUBECONFIG = "SCALEKEEPER_TEST_KUBECONFIG"
ENV_CLIENT_CA_CERT = "SCALEKEEPER_TEST_CLIENT_CA_CERT"
ENV_CLIENT_CA_KEY = "SCALEKEEPER_TEST_CLIENT_CA_KEY"


class NoClientCA(RuntimeError):
    """User certificates were asked for but the cluster's client CA is unknown."""


def external_kubeconfig_from_env() -> Path | None:
    """The kubeconfig of an existing cluster to test against, or None for the harness's own.

    ``SCALEKEEPER_TEST_KUBECONFIG`` is a path, or ``1``/``true`` for ``$KUBECONFIG``
    (default ``~/.kube/config``).
    """
    value = os.environ.get(ENV_KUBECONFIG, "").strip()
    if not value:
        return None
    if value.lower() in ("1", "true", "yes"):
        first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        return Path(first) if first else Path.home() / ".kube" / "config"
    return Path(value)


def dns_label(text: str, *, max_length: int = 63) -> str:
    """``text`` squeezed into a unique, valid DNS-1123 label (namespace and object names)."""
    suffix = secrets.token_hex(3)
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    base = base[: max_length - len(suffix) - 1].rstrip("-") or "x"
    return f"{base}-{suffix}"


class TestCluster:
    """An API server plus an admin identity and ways to mint other identities."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        admin_kubeconfig: Path,
        workdir: Path,
        *,
        client_ca: pki.CertificateAuthority | None,
        control_plane: ControlPlane | None = None,
    ) -> None:
        self.admin_kubeconfig = admin_kubeconfig
        self.workdir = workdir
        self.client_ca = client_ca
        self.control_plane = control_plane
        info = kubeconfig.read_cluster_info(admin_kubeconfig)
        self.server = info.server
        self.ca_pem = info.ca_pem

    @classmethod
    def local(cls, control_plane: ControlPlane, workdir: Path) -> TestCluster:
        return cls(control_plane.kubeconfig, workdir, client_ca=control_plane.ca, control_plane=control_plane)

    @classmethod
    def external(cls, admin_kubeconfig: Path, workdir: Path) -> TestCluster:
        cert, key = os.environ.get(ENV_CLIENT_CA_CERT), os.environ.get(ENV_CLIENT_CA_KEY)
        client_ca = pki.CertificateAuthority.load(Path(cert), Path(key)) if cert and key else None
        return cls(admin_kubeconfig, workdir, client_ca=client_ca)

    @property
    def is_local(self) -> bool:
        return self.control_plane is not None

    def _require_ca_pem(self) -> bytes:
        if self.ca_pem is None:
            raise NoClientCA(f"{self.admin_kubeconfig} has no certificate-authority for {self.server}")
        return self.ca_pem

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for Kubernetes user ``user`` in ``groups`` (client certificate CN/O)."""
        if self.client_ca is None:
            raise NoClientCA(
                f"set {ENV_CLIENT_CA_CERT} and {ENV_CLIENT_CA_KEY} to the cluster's client CA to act as users"
            )
        cert = self.client_ca.issue_client(user, organizations=groups)
        return kubeconfig.write_kubeconfig(
            self.workdir / f"{dns_label(user)}.kubeconfig",
            server=self.server,
            ca_pem=self._require_ca_pem(),
            client_cert_pem=cert.cert_pem,
            client_key_pem=cert.key_pem,
        )

    def service_account_token(
        self, namespace: str, name: str, *, audiences: Sequence[str] = (), expiration_seconds: int = 3600
    ) -> str:
        """A TokenRequest token for ServiceAccount ``namespace/name``, created if missing."""
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        api_client = config.new_client_from_config(config_file=str(self.admin_kubeconfig))
        try:
            core = client.CoreV1Api(api_client)
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except ApiException as error:
                if error.status != 409:
                    raise
            spec = client.V1TokenRequestSpec(audiences=list(audiences) or None, expiration_seconds=expiration_seconds)
            answer = core.create_namespaced_service_account_token(
                name, namespace, client.AuthenticationV1TokenRequest(spec=spec)
            )
            token: str = answer.status.token
            return token
        finally:
            api_client.close()

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (bearer token)."""
        return kubeconfig.write_kubeconfig(
            self.workdir / f"sa-{dns_label(f'{namespace}-{name}')}.kubeconfig",
            server=self.server,
            ca_pem=self._require_ca_pem(),
            token=self.service_account_token(namespace, name),
        )
