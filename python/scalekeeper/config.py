"""Configuration: command-line flags, each with an environment variable and a sane default.

Every flag ``--some-flag`` can also be given as ``SCALEKEEPER_SOME_FLAG``; the
flag wins. The defaults are those of the Helm chart, so that a bare
``python -m scalekeeper`` inside a pod needs no arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "SCALEKEEPER_"


@dataclass(frozen=True)
class Settings:
    bind_address: str
    grpc_port: int
    http_port: int
    health_port: int
    tls_cert: Path
    tls_key: Path
    tls_client_ca: Path
    readers: frozenset[str]
    writers: frozenset[str]
    namespaces: tuple[str, ...]  # empty: all namespaces
    max_replicas: int
    kubeconfig: Path | None  # None: in-cluster, else $KUBECONFIG or ~/.kube/config
    controller: bool
    workers: int
    leader_election: bool
    leader_election_namespace: str
    lease_name: str
    identity: str
    watch_timeout_seconds: int
    watch_read_timeout_seconds: float
    drain_seconds: float
    log_level: str


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Namespaces are DNS-1123 labels; a typo must stop start-up, not leave the server watching nothing.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _env_boolean(parser: argparse.ArgumentParser, name: str, raw: str) -> bool:
    """A boolean environment variable; anything but a known spelling stops start-up (``flase`` is no False)."""
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    parser.error(f"{name}={raw[:40]!r} is not a boolean; use true or false (or 1/0, yes/no, on/off)")


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scalekeeper",
        description="gRPC and HTTP/JSON API and controller for the replica count of Kubernetes Deployments.",
        epilog=f"Each flag can also be set as an environment variable: --grpc-port is {ENV_PREFIX}GRPC_PORT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def add(flag: str, default: object, help_text: str, **kwargs: object) -> None:
        env_name = ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
        if isinstance(default, bool):
            raw = env.get(env_name)
            value = default if raw is None else _env_boolean(parser, env_name, raw)
            parser.add_argument(flag, default=value, help=help_text, action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, default=env.get(env_name, default), help=help_text, **kwargs)  # type: ignore[arg-type]

    pod_namespace = env.get("POD_NAMESPACE", "default")
    add("--bind-address", "0.0.0.0", "address the three ports listen on")  # noqa: S104
    add("--grpc-port", 8443, "gRPC API port (mTLS)", type=int)
    add("--http-port", 8444, "HTTP/JSON API port (mTLS)", type=int)
    add("--health-port", 8080, "plaintext port for /healthz, /readyz and /metrics", type=int)
    add("--tls-cert", "/etc/scalekeeper/tls/tls.crt", "server certificate chain (PEM)", type=Path)
    add("--tls-key", "/etc/scalekeeper/tls/tls.key", "server private key (PEM)", type=Path)
    add("--tls-client-ca", "/etc/scalekeeper/tls/ca.crt", "CA for client certificates", type=Path)
    add("--readers", "", "comma-separated client identities (URI/DNS SAN or CN) allowed to read")
    add("--writers", "", "comma-separated client identities allowed to read and set replicas")
    add("--namespaces", "", "comma-separated namespaces to manage; empty means all")
    add("--max-replicas", 1000, "largest replica count SetReplicas accepts", type=int)
    add("--kubeconfig", env.get("KUBECONFIG", ""), "kubeconfig file; empty: in-cluster in a pod, else ~/.kube/config")
    add("--controller", True, "run the reconciling controller (leader-elected)")
    add("--workers", 4, "concurrent reconciles", type=int)
    add("--leader-election", True, "elect one controller among replicas through a Lease")
    add("--leader-election-namespace", pod_namespace, "namespace of the leader-election Lease")
    add("--lease-name", "scalekeeper-controller", "name of the leader-election Lease")
    add("--identity", env.get("POD_NAME") or socket.gethostname(), "this replica's name in the Lease")
    add("--watch-timeout-seconds", 240, "server-side timeout of each watch request", type=int)
    add("--watch-read-timeout-seconds", 300.0, "client read timeout that detects a stuck watch", type=float)
    add("--drain-seconds", 20.0, "grace period for in-flight calls on SIGTERM", type=float)
    add("--log-level", "INFO", "log threshold", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Parse flags over environment variables; exits with a usage message on bad input."""
    env = os.environ if env is None else env
    parser = _parser(env)
    args = parser.parse_args(argv)
    settings = Settings(
        bind_address=args.bind_address,
        grpc_port=int(args.grpc_port),
        http_port=int(args.http_port),
        health_port=int(args.health_port),
        tls_cert=Path(args.tls_cert),
        tls_key=Path(args.tls_key),
        tls_client_ca=Path(args.tls_client_ca),
        readers=frozenset(_csv(args.readers)),
        writers=frozenset(_csv(args.writers)),
        namespaces=tuple(_csv(args.namespaces)),
        max_replicas=int(args.max_replicas),
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        controller=args.controller,
        workers=int(args.workers),
        leader_election=args.leader_election,
        leader_election_namespace=args.leader_election_namespace,
        lease_name=args.lease_name,
        identity=args.identity,
        watch_timeout_seconds=int(args.watch_timeout_seconds),
        watch_read_timeout_seconds=float(args.watch_read_timeout_seconds),
        drain_seconds=float(args.drain_seconds),
        log_level=args.log_level.upper(),
    )
    if settings.watch_read_timeout_seconds <= settings.watch_timeout_seconds:
        parser.error("--watch-read-timeout-seconds must exceed --watch-timeout-seconds")
    if not 0 < settings.max_replicas <= 2**31 - 1:
        parser.error("--max-replicas must be between 1 and 2147483647")
    if settings.workers < 1:
        parser.error("--workers must be at least 1")
    invalid = [namespace for namespace in settings.namespaces if not _DNS1123_LABEL.fullmatch(namespace)]
    if invalid:
        parser.error(f"--namespaces: {', '.join(map(repr, invalid))} is not a namespace name (a DNS-1123 label)")
    if settings.drain_seconds < 0:
        parser.error("--drain-seconds must not be negative")
    return settings
