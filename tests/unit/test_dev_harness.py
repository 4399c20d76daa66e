"""Pure parts of the developer harness: names, environment, the `certs` command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalekeeper_dev import devcerts
from scalekeeper_dev.__main__ import main
from scalekeeper_dev.testcluster import ENV_KUBECONFIG, dns_label, external_kubeconfig_from_env

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("text", ["t-test_thing[param-1]", "UPPER and spaces", "---", "", "x" * 200, "test_a.b/c"])
def test_dns_label_is_valid_and_unique(text: str) -> None:
    first, second = dns_label(text, max_length=50), dns_label(text, max_length=50)
    assert DNS_LABEL.match(first), first
    assert len(first) <= 50
    assert first != second


def test_external_kubeconfig_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_KUBECONFIG, raising=False)
    assert external_kubeconfig_from_env() is None
    monkeypatch.setenv(ENV_KUBECONFIG, str(tmp_path / "kc"))
    assert external_kubeconfig_from_env() == tmp_path / "kc"
    monkeypatch.setenv(ENV_KUBECONFIG, "1")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert external_kubeconfig_from_env() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    assert external_kubeconfig_from_env() == Path.home() / ".kube" / "config"


def test_certs_command_writes_and_keeps_dev_certs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "certs"
    assert main(["certs", "--dir", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(devcerts.DEV_CERT_FILES)
    assert "wrote" in capsys.readouterr().out
    assert main(["certs", "--dir", str(target)]) == 0
    assert "kept existing" in capsys.readouterr().out


def test_cluster_down_without_a_cluster_is_a_no_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster-down", "--dev-dir", str(tmp_path)]) == 0
    assert "no control plane running" in capsys.readouterr().out


def test_a_new_benchmark_report_keeps_the_hand_written_delivery_figures(tmp_path: Path) -> None:
    from scalekeeper_dev.bench import _hand_written_tail

    report = tmp_path / "benchmarks.md"
    assert _hand_written_tail(report) == ""
    report.write_text("# Benchmarks\n\nold figures\n\n## Delivery on a real node (hand-written)\n\n| calls | 1140 |\n")
    assert _hand_written_tail(report) == "\n## Delivery on a real node (hand-written)\n\n| calls | 1140 |\n"
    report.write_text("# Benchmarks\n\nno hand-written part\n")
    assert _hand_written_tail(report) == ""


def test_make_tools_builds_the_real_nodes_tools_only_where_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # A cold first build of the node's tools takes minutes: `make tools` must do it, not a test under its time limit.
    from scalekeeper_dev import toolchain

    monkeypatch.setattr(toolchain, "ensure", lambda binary: Path("/cache") / binary)
    node_binaries = {"kubelet", "containerd", "coredns"}
    assert node_binaries <= set(toolchain.ensure_all(real_node=True))
    assert not node_binaries & set(toolchain.ensure_all())
    assert {"kube-apiserver", "etcd", "ghz"} <= set(toolchain.ensure_all())
