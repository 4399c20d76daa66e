"""Chart options production users expect: security contexts, a ServiceMonitor, several releases.

Rendered with `helm template` (tests/chart_support.py). That a second release
is refused the CRD with a clear message needs a cluster to look the CRD up in:
tests/integration/test_chart.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

# tests/ is on sys.path: pytest inserts the directory of the rootmost conftest.py.
from chart_support import CHART, by_kind, one, refusal, render

OPENSHIFT = CHART / "ci" / "openshift-values.yaml"
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pods(objects: Sequence[Mapping]) -> list[Mapping]:
    """The server's pod template and the `helm test` pod."""
    return [one(objects, "Deployment")["spec"]["template"]["spec"], one(objects, "Pod")["spec"]]


def test_security_contexts_default_to_the_images_uid() -> None:
    for pod in _pods(render()):
        assert pod["securityContext"] == RESTRICTED_POD
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }


def test_security_contexts_can_leave_the_uid_to_the_platform() -> None:
    for pod in _pods(render([OPENSHIFT])):
        assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        (container,) = pod["containers"]
        assert "runAsUser" not in container["securityContext"]


def test_container_security_context_is_overridable() -> None:
    objects = render(set_values=["securityContext.readOnlyRootFilesystem=false", "securityContext.runAsUser=1000"])
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_no_service_monitor_by_default() -> None:
    assert not by_kind(render(), "ServiceMonitor")


def test_service_monitor_scrapes_exactly_the_metrics_service() -> None:
    objects = render([OPENSHIFT])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["scalekeeper"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = by_kind(objects, "Service")
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["sk-scalekeeper-metrics"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "health",
        "path": "/metrics",
        "scheme": "http",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert endpoint["port"] in {port["name"] for port in selected[0]["spec"]["ports"]}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["serviceMonitor.enabled=true", "service.metrics.enabled=false"], "needs service.metrics.enabled"),
        (["serviceMonitor.interval=often"], "/serviceMonitor/interval"),
        (["serviceMonitor.enable=true"], "enable"),
        (["podSecurityContext=strict"], "podSecurityContext"),
    ],
    ids=["without-metrics-service", "bad-interval", "typo", "not-a-map"],
)
def test_bad_option_values_are_refused(settings: list[str], message: str) -> None:
    assert message in refusal(settings)


def _identities(objects: Sequence[Mapping], namespace: str) -> set[tuple[str, str, str]]:
    return {(o["kind"], o["metadata"].get("namespace", namespace), o["metadata"]["name"]) for o in objects}


@pytest.mark.parametrize("variant", [[], [CHART / "ci" / "namespaced-values.yaml"]], ids=["cluster", "namespaced"])
def test_same_release_name_in_two_namespaces_shares_no_object_but_the_crd(variant: list) -> None:
    first = render(variant, namespace="team-a-system")
    second = render(variant, set_values=["crds.install=false"], namespace="team-b-system")
    # Cluster-scoped objects carry no namespace, so they are compared by name alone.
    assert not _identities(first, "") & _identities(second, "")
    assert by_kind(first, "CustomResourceDefinition")
    assert not by_kind(second, "CustomResourceDefinition")
