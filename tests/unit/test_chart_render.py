"""The Helm chart, rendered with `helm template` for every ci/*-values.yaml.

These checks pin the production properties that are easy to lose in an edit:
zero-downtime rollout settings, the restricted security context, least
privilege RBAC, the CRD being the one shared file, and a schema that rejects
typos. Installing into a real apiserver is tests/integration/test_chart.py.
"""

from __future__ import annotations

import pytest
import yaml

# tests/ is on sys.path: pytest inserts the directory of the rootmost conftest.py.
from chart_support import (
    CHART,
    CI_VALUES,
    CRD_FILE,
    LEASE_VERBS,
    WATCH_PERMISSIONS,
    by_kind,
    granted,
    helm,
    one,
    refusal,
    render,
)

CI_IDS = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]


def _env(container: dict) -> dict[str, object]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_ci_values_cover_the_main_variants() -> None:
    assert {"default", "namespaced", "cert-manager", "networkpolicy"} <= set(CI_IDS)


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm_lint_strict(values) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_every_variant_renders_a_restricted_zero_downtime_deployment(values) -> None:
    objects = render([values])
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["minReadySeconds"] > 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]

    # Restricted Pod Security Standard.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}

    # Probes on the plaintext health port, a shell-free preStop pause, and a
    # grace period that covers pause + drain.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": 8443, "https": 8444, "health": 8080}
    for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "health"}
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    env = _env(container)
    assert pod["terminationGracePeriodSeconds"] > pause + float(env["SCALEKEEPER_DRAIN_SECONDS"])
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert pod["topologySpreadConstraints"]

    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SCALEKEEPER_LEADER_ELECTION_NAMESPACE"] == "scalekeeper"
    assert pod["enableServiceLinks"] is False
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts["/etc/scalekeeper/tls"] == "tls"


def test_defaults_watch_all_namespaces_with_a_cluster_role() -> None:
    objects = render()
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    cluster_role = one(objects, "ClusterRole")
    assert granted(cluster_role["rules"]) == WATCH_PERMISSIONS
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sk-scalekeeper", "namespace": "scalekeeper"}]
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert _env(container)["SCALEKEEPER_NAMESPACES"] == ""
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not by_kind(objects, "NetworkPolicy")
    assert not by_kind(objects, "Certificate")


def test_leader_election_is_one_named_lease_in_the_release_namespace() -> None:
    objects = render()
    role = one(objects, "Role", "sk-scalekeeper-leader-election")
    assert role["metadata"]["namespace"] == "scalekeeper"
    verbs: set[str] = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"]
        assert rule["resources"] == ["leases"]
        if rule["verbs"] != ["create"]:  # create cannot be limited by name
            assert rule["resourceNames"] == ["sk-scalekeeper-controller"]
        verbs.update(rule["verbs"])
    assert verbs == LEASE_VERBS
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert _env(container)["SCALEKEEPER_LEASE_NAME"] == "sk-scalekeeper-controller"


def test_namespaced_watch_gets_a_role_per_namespace_and_no_cluster_role() -> None:
    objects = render([CHART / "ci" / "namespaced-values.yaml"])
    assert not by_kind(objects, "ClusterRole")
    assert not by_kind(objects, "ClusterRoleBinding")
    # Named after the release namespace too: it lives outside it (see test_chart_options.py).
    watch_name = "scalekeeper-sk-scalekeeper"
    watch_roles = [role for role in by_kind(objects, "Role") if role["metadata"]["name"] == watch_name]
    assert sorted(role["metadata"]["namespace"] for role in watch_roles) == ["team-a", "team-b"]
    for role in watch_roles:
        assert granted(role["rules"]) == WATCH_PERMISSIONS
    bindings = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == watch_name]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["SCALEKEEPER_NAMESPACES"] == "team-a,team-b"
    assert env["SCALEKEEPER_READERS"] == "scalekeeper-reader"
    assert env["SCALEKEEPER_WRITERS"] == "scalekeeper-writer"


def test_cert_manager_issues_server_and_test_client_certificates() -> None:
    objects = render([CHART / "ci" / "cert-manager-values.yaml"])
    server = one(objects, "Certificate", "sk-scalekeeper")
    assert "sk-scalekeeper.scalekeeper.svc" in server["spec"]["dnsNames"]
    assert server["spec"]["issuerRef"] == {
        "name": "scalekeeper-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": server["spec"]["secretName"], "defaultMode": 0o440}} in volumes
    client = one(objects, "Certificate", "sk-scalekeeper-test-client")
    assert client["spec"]["usages"] == ["client auth", "digital signature"]
    test_pod = one(objects, "Pod")
    assert test_pod["spec"]["volumes"][0]["secret"]["secretName"] == client["spec"]["secretName"]


def test_network_policy_variant() -> None:
    objects = render([CHART / "ci" / "networkpolicy-values.yaml"])
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"scalekeeper.dev/client": "true"}}}
    ]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/scalekeeper@sha256:" + "0" * 64
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_service_keeps_the_plaintext_health_port_off_the_api_service() -> None:
    objects = render()
    api = one(objects, "Service", "sk-scalekeeper")
    assert [port["name"] for port in api["spec"]["ports"]] == ["grpc", "https"]
    metrics = one(objects, "Service", "sk-scalekeeper-metrics")
    assert [port["port"] for port in metrics["spec"]["ports"]] == [8080]


def test_crd_is_the_shared_file_plus_the_keep_policy() -> None:
    crd = one(render(), "CustomResourceDefinition")
    expected = yaml.safe_load(CRD_FILE.read_text())
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["spec"] == expected["spec"]
    assert crd["metadata"]["name"] == expected["metadata"]["name"] == "deploymentscales.scalekeeper.dev"


def test_crd_can_be_left_to_another_release() -> None:
    assert not by_kind(render(set_values=["crds.install=false"]), "CustomResourceDefinition")


def test_single_replica_gets_no_pdb_that_would_block_drains() -> None:
    assert not by_kind(render(set_values=["replicaCount=1"]), "PodDisruptionBudget")


def test_helm_test_hook_checks_grpc_health_over_mtls() -> None:
    pod = one(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "ssl_channel_credentials" in script
    assert "sk-scalekeeper.scalekeeper.svc:8443" in script
    # existingSecret without tests.clientSecret: the server's own Secret.
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == "sk-scalekeeper-tls"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["replicaCont=3"], "replicaCont"),  # typo at the top level
        (["server.drainSecond=30"], "drainSecond"),  # typo in a nested map
        (["replicaCount=two"], "replicaCount"),  # wrong type
        (["tls.source=vault"], "/tls/source"),  # not one of the enum
        (["image.digest=latest"], "/image/digest"),
        (["watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
    ],
    ids=["top-level-typo", "nested-typo", "wrong-type", "bad-enum", "bad-digest", "bad-namespace"],
)
def test_schema_rejects_bad_values(settings: list[str], message: str) -> None:
    assert message in refusal(settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["terminationGracePeriodSeconds=20"], "must exceed preStopSleepSeconds + server.drainSeconds"),
        (["tls.source=certManager"], "tls.certManager.issuerRef.name is required"),
    ],
    ids=["grace-shorter-than-drain", "cert-manager-without-issuer"],
)
def test_template_rejects_unsafe_combinations(settings: list[str], message: str) -> None:
    assert message in refusal(settings)
