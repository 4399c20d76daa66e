"""Which components the local control plane runs, and the command line of each.

Everything listens on loopback and on ports picked at start. No component may
resolve a host name through the machine's resolver (nothing off the machine
may be contacted), so every address is an IP: the apiserver reaches nodes by
their InternalIP only, and nothing is configured by name.
"""

from __future__ import annotations

import enum
import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

from scalekeeper_dev.clusterpki import LOOPBACK, SERVICE_CLUSTER_IP_RANGE, ClusterPki

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KWOK = "kwok"


class Components(enum.Enum):
    """The component sets a :class:`~scalekeeper_dev.controlplane.ControlPlane` can run."""

    # etcd + kube-apiserver: the API alone. No controller acts on what is
    # written, so a Deployment gets no ReplicaSet, no Pods and no status.
    APISERVER = "apiserver"
    # + kube-controller-manager, kube-scheduler and KWOK's simulated nodes:
    # Deployments roll out and Pods become Ready, as on a real cluster.
    CLUSTER = "cluster"
    # + kube-controller-manager and kube-scheduler, no simulated nodes: the
    # caller brings a real one (scalekeeper_dev.node).
    CONTROLLERS = "controllers"

    @property
    def names(self) -> tuple[str, ...]:
        base = ("etcd", "kube-apiserver")
        if self is Components.APISERVER:
            return base
        return (*base, CONTROLLER_MANAGER, SCHEDULER, *((KWOK,) if self is Components.CLUSTER else ()))


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def etcd_argv(binary: Path, ports: Ports, data_dir: Path) -> list[str]:
    client_url = f"http://{LOOPBACK}:{ports.etcd}"
    peer_url = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=scalekeeper-test",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=scalekeeper-test={peer_url}",
        "--unsafe-no-fsync=true",  # test data: durability costs time for nothing
        "--enable-grpc-gateway=true",  # JSON API used by compact_etcd()
        "--log-level=warn",
    ]


def apiserver_argv(
    binary: Path, ports: Ports, files: ClusterPki, components: Components, address: str = LOOPBACK
) -> list[str]:
    """``address``: where it listens and what the ``kubernetes`` Service points at (a real node's pods use it)."""
    # Without a controller-manager nobody creates a namespace's `default`
    # ServiceAccount, and the ServiceAccount admission plugin would hold Pods
    # back for it; with one, the plugin runs as on any cluster.
    admission = ["--disable-admission-plugins=ServiceAccount"] if components is Components.APISERVER else []
    return [
        str(binary),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd}",
        f"--secure-port={ports.apiserver}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        # The `kubernetes` Service's endpoints may not be loopback, and
        # nothing in-cluster uses them without a real node.
        *(["--endpoint-reconciler-type=none"] if address == LOOPBACK else []),
        # Logs/exec reach a node by its address, never by resolving its name.
        "--kubelet-preferred-address-types=InternalIP",
        f"--tls-cert-file={files.cert('apiserver')}",
        f"--tls-private-key-file={files.key('apiserver')}",
        f"--client-ca-file={files.ca_cert}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={files.service_account_public_key}",
        f"--service-account-signing-key-file={files.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--allow-privileged=true",
        *admission,
        "--profiling=false",
    ]


def _delegated_auth(kubeconfig: Path, files: ClusterPki, component: str, port: int) -> list[str]:
    """Flags shared by kcm and the scheduler: their identity, and a verifiable health endpoint."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={files.serving_cert(component)}",
        f"--tls-private-key-file={files.serving_key(component)}",
        "--leader-elect=false",  # one instance; an election only delays the start
        "--profiling=false",
    ]


def controller_manager_argv(binary: Path, ports: Ports, files: ClusterPki, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        *_delegated_auth(kubeconfig, files, CONTROLLER_MANAGER, ports.controller_manager),
        # Each controller acts as its own ServiceAccount, with its bootstrap role.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={files.service_account_key}",
        f"--root-ca-file={files.ca_cert}",
        f"--cluster-signing-cert-file={files.ca_cert}",
        f"--cluster-signing-key-file={files.ca_key}",
    ]


def scheduler_argv(binary: Path, ports: Ports, files: ClusterPki, kubeconfig: Path) -> list[str]:
    return [str(binary), *_delegated_auth(kubeconfig, files, SCHEDULER, ports.scheduler)]


def healthz_ok(port: int, ca_file: Path) -> bool:
    """Whether ``/healthz`` on loopback ``port`` answers 200 (TLS verified with ``ca_file``)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=2.0)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    finally:
        conn.close()
