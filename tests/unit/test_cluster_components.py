"""The local cluster's components, without starting them: KWOK's config from its module, command lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scalekeeper_dev import kwok
from scalekeeper_dev.components import Components


def _stage(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}})


def _kustomization(directory: Path, resources: list[str], **extra: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({**document, **extra}))


def _module(root: Path) -> Path:
    """A module tree shaped like KWOK's: a profile naming directories that name files."""
    stage = root / "kustomize" / "stage"
    _kustomization(stage / "fast", ["../node/fast", "../pod/fast"])
    _kustomization(stage / "node" / "fast", ["node-initialize.yaml"])
    (stage / "node" / "fast" / "node-initialize.yaml").write_text(_stage("node-initialize"))
    _kustomization(stage / "pod" / "fast", ["pod-ready.yaml", "pod-delete.yaml"])
    for name in ("pod-ready", "pod-delete"):
        (stage / "pod" / "fast" / f"{name}.yaml").write_text(_stage(name))
    return root


def test_stage_config_follows_the_kustomizations_in_order(tmp_path: Path) -> None:
    config = kwok.stage_config(_module(tmp_path))
    assert kwok.stage_names(config) == ["node-initialize", "pod-ready", "pod-delete"]


def test_a_kustomization_with_more_than_resources_is_refused(tmp_path: Path) -> None:
    module = _module(tmp_path)
    _kustomization(module / "kustomize" / "stage" / "pod" / "fast", ["pod-ready.yaml"], patches=[{"path": "x"}])
    with pytest.raises(kwok.KwokModuleError, match="patches"):
        kwok.stage_config(module)


def test_a_resource_that_is_not_a_stage_is_refused(tmp_path: Path) -> None:
    module = _module(tmp_path)
    (module / "kustomize" / "stage" / "pod" / "fast" / "pod-ready.yaml").write_text(
        yaml.safe_dump({"kind": "ConfigMap", "metadata": {"name": "x"}})
    )
    with pytest.raises(kwok.KwokModuleError, match="Stage documents only"):
        kwok.stage_config(module)


def test_fake_nodes_carry_the_annotation_kwok_selects_and_no_taint() -> None:
    node = kwok.fake_node("n", labels={"pool": "a"})
    assert node["metadata"]["annotations"][kwok.NODE_ANNOTATION] == kwok.NODE_ANNOTATION_VALUE
    assert node["metadata"]["labels"]["pool"] == "a"
    assert "taints" not in node.get("spec", {})
    assert f"--manage-nodes-with-annotation-selector={kwok.NODE_ANNOTATION}={kwok.NODE_ANNOTATION_VALUE}" in (
        kwok.argv(Path("kwok"), kubeconfig=Path("k"), config=Path("c"), server_port=1)
    )


def test_component_sets() -> None:
    assert Components.APISERVER.names == ("etcd", "kube-apiserver")
    assert Components.CLUSTER.names == (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    )


def _all_argv(tmp_path: Path, components: Components) -> list[list[str]]:
    from scalekeeper_dev.clusterpki import ClusterPki
    from scalekeeper_dev.components import (
        Ports,
        apiserver_argv,
        controller_manager_argv,
        etcd_argv,
        scheduler_argv,
    )

    ports, files, kubeconfig = Ports(1, 2, 3, 4, 5, 6), ClusterPki(tmp_path), tmp_path / "k"
    return [
        etcd_argv(Path("etcd"), ports, tmp_path),
        apiserver_argv(Path("kube-apiserver"), ports, files, components),
        controller_manager_argv(Path("kcm"), ports, files, kubeconfig),
        scheduler_argv(Path("sched"), ports, files, kubeconfig),
        kwok.argv(Path("kwok"), kubeconfig=kubeconfig, config=tmp_path / "c", server_port=ports.kwok),
    ]


@pytest.mark.parametrize("components", list(Components))
def test_no_component_is_given_a_host_name(tmp_path: Path, components: Components) -> None:
    """Names would go to the machine's resolver; every address a component is given is an IP."""
    import ipaddress
    import re

    for argv in _all_argv(tmp_path, components):
        # The issuer is an identifier written into tokens, never dialled.
        flags = " ".join(flag for flag in argv if not flag.startswith("--service-account-issuer="))
        hosts = re.findall(r"(?:https?://|address=)([^:/,\s]+)", flags)
        assert hosts, argv
        for host in hosts:
            ipaddress.ip_address(host)  # raises on a name
        assert "localhost" not in flags


def test_service_account_admission_is_off_only_without_a_controller_manager(tmp_path: Path) -> None:
    from scalekeeper_dev.clusterpki import ClusterPki
    from scalekeeper_dev.components import Ports, apiserver_argv

    def argv(components: Components) -> list[str]:
        return apiserver_argv(Path("kube-apiserver"), Ports(1, 2, 3, 4, 5, 6), ClusterPki(tmp_path), components)

    assert "--disable-admission-plugins=ServiceAccount" in argv(Components.APISERVER)
    assert not any(flag.startswith(("--disable-admission", "--enable-admission")) for flag in argv(Components.CLUSTER))
    assert "--kubelet-preferred-address-types=InternalIP" in argv(Components.CLUSTER)
