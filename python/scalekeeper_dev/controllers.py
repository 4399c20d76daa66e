"""kube-controller-manager, kube-scheduler and KWOK on a running apiserver: setup, launch, readiness.

They start together once the apiserver is ready. Before that, the admin
creates what a cluster installer would: KWOK's ClusterRole (from its module)
and binding, and the fake Node objects KWOK is to manage. The control plane
counts as ready when both controllers answer ``/healthz``, the ServiceAccount
controller has created ``default/default`` (Pods wait for their namespace's),
and every fake Node is Ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scalekeeper_dev import kwok, manifests, toolchain
from scalekeeper_dev.adminapi import AdminApi
from scalekeeper_dev.clusterpki import KWOK_USER, ClusterPki
from scalekeeper_dev.components import (
    CONTROLLER_MANAGER,
    KWOK,
    SCHEDULER,
    Ports,
    controller_manager_argv,
    healthz_ok,
    scheduler_argv,
)
from scalekeeper_dev.supervised import SupervisedChild

RBAC = "/apis/rbac.authorization.k8s.io/v1"
DEFAULT_SERVICE_ACCOUNT = "/api/v1/namespaces/default/serviceaccounts/default"


@dataclass(frozen=True)
class Launch:
    """What :func:`launch` needs from the control plane."""

    api: AdminApi
    files: ClusterPki
    workdir: Path
    server: str
    binaries: dict[str, Path]
    ports: Ports
    fake_nodes: Sequence[str]
    child: Callable[[str, list[str]], SupervisedChild]  # registers a supervised child by name


def launch(setup: Launch) -> dict[SupervisedChild, Callable[[], bool]]:
    """Start the components (KWOK only for fake nodes); returns each one's readiness check."""
    binaries, ports, files = setup.binaries, setup.ports, setup.files
    kubeconfigs = {
        name: setup.files.write_kubeconfig(setup.workdir / f"{name}.kubeconfig", setup.server, name)
        for name in (CONTROLLER_MANAGER, SCHEDULER)
    }
    controller_manager = setup.child(
        CONTROLLER_MANAGER,
        controller_manager_argv(binaries[CONTROLLER_MANAGER], ports, files, kubeconfigs[CONTROLLER_MANAGER]),
    )
    scheduler = setup.child(SCHEDULER, scheduler_argv(binaries[SCHEDULER], ports, files, kubeconfigs[SCHEDULER]))
    checks: dict[SupervisedChild, Callable[[], bool]] = {
        controller_manager: lambda: (
            healthz_ok(ports.controller_manager, files.ca_cert) and setup.api.exists(DEFAULT_SERVICE_ACCOUNT)
        ),
        scheduler: lambda: healthz_ok(ports.scheduler, files.ca_cert),
    }
    for child in (controller_manager, scheduler):
        child.start()
    if setup.fake_nodes:
        checks[_launch_simulator(setup)] = lambda: fake_nodes_ready(setup.api, setup.fake_nodes)
    return checks


def _launch_simulator(setup: Launch) -> SupervisedChild:
    module = toolchain.module_dir("kwok")
    role = kwok.controller_role(module)
    setup.api.create(f"{RBAC}/clusterroles", role)
    role_name = role["metadata"]["name"]
    setup.api.create(f"{RBAC}/clusterrolebindings", manifests.cluster_role_binding(role_name, role_name, KWOK_USER))
    for name in setup.fake_nodes:
        setup.api.create("/api/v1/nodes", kwok.fake_node(name))
    stages = setup.workdir / "kwok-stages.yaml"
    stages.write_text(kwok.stage_config(module))
    kubeconfig = setup.files.write_kubeconfig(setup.workdir / f"{KWOK}.kubeconfig", setup.server, KWOK)
    simulator = setup.child(
        KWOK, kwok.argv(setup.binaries[KWOK], kubeconfig=kubeconfig, config=stages, server_port=setup.ports.kwok)
    )
    simulator.start()
    return simulator


def fake_nodes_ready(api: AdminApi, names: Sequence[str]) -> bool:
    try:
        status, body = api.request("GET", "/api/v1/nodes", timeout=2.0)
    except (OSError, ValueError):
        return False
    ready = {item["metadata"]["name"] for item in body.get("items", []) if kwok.node_ready(item)}
    return status == 200 and ready.issuperset(names)
