"""The Helm chart installed into the real control plane, and its ServiceAccount's permissions.

The harness runs etcd + kube-apiserver only: no kubelet, no controllers, so the
pods never start and `helm install` runs without --wait; what is verified is
that the apiserver accepts every object (schema, admission, RBAC escalation
checks), that upgrade and uninstall behave, and that the ServiceAccount is
allowed exactly what the server and controller need, asked through
SubjectAccessReview as the cluster's own RBAC authorizer decides it.

Finally the server itself runs locally with a TokenRequest token of that
ServiceAccount, controller included, and every RPC is called: the RBAC does
not merely look right, it suffices.
"""

from __future__ import annotations

import json

import pytest
from chart_releases import CRD_NAME, Release
from kubernetes import client
from kubernetes.client.rest import ApiException
from server_harness import eventually

# tests/ is on sys.path: pytest inserts the directory of the rootmost conftest.py.
from chart_support import LEASE_VERBS, WATCH_PERMISSIONS
from scalekeeper.v1 import replicas_pb2 as pb

ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def can(api: client.ApiClient, release: Release, verb: str, group: str, resource: str, **attributes: str) -> bool:
    """SubjectAccessReview for the release's ServiceAccount, decided by the apiserver's authorizer."""
    subresource = ""
    if "/" in resource:
        resource, subresource = resource.split("/", 1)
    user = f"system:serviceaccount:{release.namespace}:{release.service_account}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{release.namespace}", "system:authenticated"]
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=groups,
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=subresource or None, **attributes
            ),
        )
    )
    answer = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(answer.status.allowed)


def assert_exact_permissions(api: client.ApiClient, release: Release, namespace: str) -> None:
    """Every needed verb allowed in ``namespace``; every other verb on the same resources denied."""
    for (group, resource), verbs in WATCH_PERMISSIONS.items():
        for verb in ALL_VERBS:
            allowed = can(api, release, verb, group, resource, namespace=namespace)
            assert allowed == (verb in verbs), f"{verb} {group}/{resource} in {namespace}: {allowed}"


def assert_no_extras(api: client.ApiClient, release: Release, namespace: str) -> None:
    """The things a compromised scalekeeper must not be able to do."""
    denied = [
        ("get", "", "secrets"),
        ("list", "", "secrets"),
        ("list", "", "pods"),
        ("create", "", "pods"),
        ("delete", "apps", "deployments"),
        ("update", "apps", "deployments"),
        ("patch", "apps", "deployments"),
        ("update", "apps", "replicasets/scale"),
        ("update", "autoscaling", "horizontalpodautoscalers"),
        ("delete", "scalekeeper.dev", "deploymentscales"),
        ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ]
    if namespace != release.namespace:
        denied.append(("create", "coordination.k8s.io", "leases"))  # only in the release namespace
    for verb, group, resource in denied:
        assert not can(api, release, verb, group, resource, namespace=namespace), f"{verb} {group}/{resource}"


def assert_lease_permissions(api: client.ApiClient, release: Release) -> None:
    ns = release.namespace
    for verb in LEASE_VERBS:
        assert can(api, release, verb, "coordination.k8s.io", "leases", namespace=ns, name=release.lease), verb
    for verb in ("delete", "list", "watch", "patch"):
        assert not can(api, release, verb, "coordination.k8s.io", "leases", namespace=ns, name=release.lease), verb
    # Another component's Lease in the same namespace, and leases cluster-wide.
    assert not can(api, release, "update", "coordination.k8s.io", "leases", namespace=ns, name="kube-scheduler")
    assert not can(api, release, "get", "coordination.k8s.io", "leases", namespace=ns, name="other")
    assert not can(api, release, "list", "coordination.k8s.io", "leases")
    assert not can(api, release, "create", "coordination.k8s.io", "leases", namespace="kube-system")


def test_chart_installs_upgrades_and_keeps_the_crd(admin_api, make_release) -> None:
    release = make_release()
    apps, core = client.AppsV1Api(admin_api), client.CoreV1Api(admin_api)
    rbac, policy = client.RbacAuthorizationV1Api(admin_api), client.PolicyV1Api(admin_api)

    assert "grpcurl -cacert ca.crt -cert client.crt -key client.key" in release.notes
    assert f"-authority {release.fullname}.{release.namespace}.svc" in release.notes

    deployment = apps.read_namespaced_deployment(release.fullname, release.namespace)
    assert deployment.spec.replicas == 2
    pod = deployment.spec.template.spec
    assert pod.containers[0].lifecycle.pre_stop.sleep.seconds == 5
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert core.read_namespaced_service(release.fullname, release.namespace).spec.ports[0].port == 8443
    core.read_namespaced_service(f"{release.fullname}-metrics", release.namespace)
    core.read_namespaced_service_account(release.service_account, release.namespace)
    rbac.read_cluster_role(release.cluster_role)
    rbac.read_cluster_role_binding(release.cluster_role)
    rbac.read_namespaced_role(f"{release.fullname}-leader-election", release.namespace)
    assert policy.read_namespaced_pod_disruption_budget(release.fullname, release.namespace).spec.min_available == 1

    extensions = client.ApiextensionsV1Api(admin_api)
    crd = extensions.read_custom_resource_definition(CRD_NAME)
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    assert crd.metadata.annotations["meta.helm.sh/release-name"] == release.name
    established = {c.type: c.status for c in crd.status.conditions or []}
    assert established.get("NamesAccepted") == "True"

    # Upgrade in place: the CRD is a template, so it is upgraded too.
    release.install("replicaCount=3", verb="upgrade")
    assert apps.read_namespaced_deployment(release.fullname, release.namespace).spec.replicas == 3
    history = json.loads(release.helm("history", release.name, "--output", "json").stdout)
    assert [entry["status"] for entry in history] == ["superseded", "deployed"]

    # A typo in values fails the upgrade before anything reaches the cluster.
    bad = release.try_install("replicaCont=4", verb="upgrade")
    assert bad.returncode != 0
    assert "replicaCont" in bad.stderr
    assert apps.read_namespaced_deployment(release.fullname, release.namespace).spec.replicas == 3

    # Uninstall removes the release's objects but keeps the CRD (and every DeploymentScale).
    release.helm("uninstall", release.name, "--wait=false")
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(release.cluster_role)
    assert gone.value.status == 404
    assert extensions.read_custom_resource_definition(CRD_NAME).metadata.name == CRD_NAME


def test_service_account_has_exactly_the_needed_permissions_cluster_wide(admin_api, make_release) -> None:
    release = make_release()
    for namespace in (release.namespace, "default"):
        assert_exact_permissions(admin_api, release, namespace)
        assert_no_extras(admin_api, release, namespace)
    assert_lease_permissions(admin_api, release)
    # Watching all namespaces needs cluster-wide list/watch of Deployments, and nothing cluster-wide beyond reads.
    assert can(admin_api, release, "list", "apps", "deployments")
    assert not can(admin_api, release, "list", "", "secrets")


def test_namespaced_watch_confines_permissions_to_those_namespaces(admin_api, make_release, extra_namespaces) -> None:
    watched = extra_namespaces(2)
    release = make_release("watchNamespaces={" + ",".join(watched) + "}")
    for namespace in watched:
        assert_exact_permissions(admin_api, release, namespace)
        assert_no_extras(admin_api, release, namespace)
    for verb in ("get", "list", "watch"):
        assert not can(admin_api, release, verb, "apps", "deployments", namespace="default"), verb
        assert not can(admin_api, release, verb, "apps", "deployments"), f"cluster-wide {verb}"
    assert not can(admin_api, release, "update", "apps", "deployments/scale", namespace="default")
    assert_lease_permissions(admin_api, release)
    with pytest.raises(ApiException) as missing:
        client.RbacAuthorizationV1Api(admin_api).read_cluster_role(release.cluster_role)
    assert missing.value.status == 404


def test_service_account_token_is_really_confined(admin_api, make_release, api_as_service_account) -> None:
    """The same checks with a real TokenRequest token, not a review: reads allowed, Secrets forbidden."""
    release = make_release()
    api = api_as_service_account(release.namespace, release.service_account)
    client.AppsV1Api(api).list_deployment_for_all_namespaces(limit=1)
    client.AppsV1Api(api).list_namespaced_deployment(release.namespace, limit=1)
    with pytest.raises(ApiException) as forbidden:
        client.CoreV1Api(api).list_namespaced_secret(release.namespace, limit=1)
    assert forbidden.value.status == 403


def test_server_runs_on_the_chart_service_account_alone(
    test_cluster, admin_api, make_release, start_server, deployments
) -> None:
    """Every RPC, and a reconcile, with nothing but the chart's RBAC behind the server."""
    release = make_release()
    namespace = release.namespace
    deployments(namespace, ["smoke"], replicas=1)
    server = start_server(
        "--controller",
        f"--leader-election-namespace={namespace}",
        f"--lease-name={release.lease}",
        kubeconfig=test_cluster.service_account_kubeconfig(namespace, release.service_account),
    )
    stub = server.stub("writer")
    assert stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="smoke")).spec_replicas == 1
    listed = stub.ListDeployments(pb.ListDeploymentsRequest(namespace=namespace))
    assert {d.name for d in listed.deployments} == {"smoke", release.fullname}
    watch = stub.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=10)
    assert {next(watch).replicas.name for _ in range(2)} == {"smoke", release.fullname}
    watch.cancel()
    assert stub.SetReplicas(pb.SetReplicasRequest(namespace=namespace, name="smoke", replicas=3)).desired_replicas == 3

    apps = client.AppsV1Api(admin_api)
    eventually(
        lambda: apps.read_namespaced_deployment_scale("smoke", namespace).spec.replicas == 3,
        "the controller, running as the chart's ServiceAccount, to scale the Deployment",
    )
    reported = eventually(
        lambda: (
            (r := stub.GetReplicas(pb.GetReplicasRequest(namespace=namespace, name="smoke"))).condition.reason
            == "Scaled"
            and r
        ),
        "the status update (deploymentscales/status) to come back through the cache",
    )
    assert reported.spec_replicas == 3
    # Only scalekeeper's: the controller-manager's core/v1 Events have no eventTime,
    # which this client's events.k8s.io/v1 model refuses to parse.
    events = client.EventsV1Api(admin_api).list_namespaced_event(
        namespace, field_selector="regarding.kind=DeploymentScale"
    )
    assert any(event.reason == "Scaled" for event in events.items)
    denied = [r for r in server.log_records() if "Forbidden" in json.dumps(r) or "403" in json.dumps(r)]
    assert denied == [], denied


def test_a_second_release_in_another_namespace_leaves_the_crd_to_the_first(
    admin_api, make_release, extra_namespaces
) -> None:
    first = make_release()
    assert "This release installs the DeploymentScale CRD" in first.notes
    (other_namespace,) = extra_namespaces(1)
    # The same release name: only the namespace tells the two apart.
    second = Release(first.kubeconfig, first.name, other_namespace)
    try:
        refused = second.try_install()
        assert refused.returncode != 0
        assert f'installed by Helm release "{first.name}" in namespace "{first.namespace}"' in refused.stderr
        assert "install this release with --set crds.install=false" in refused.stderr

        notes = second.install("crds.install=false")
        assert "the DeploymentScale CRD comes from another release" in notes
        rbac = client.RbacAuthorizationV1Api(admin_api)
        assert rbac.read_cluster_role(second.cluster_role).metadata.name != first.cluster_role
        rbac.read_cluster_role(first.cluster_role)
        crd = client.ApiextensionsV1Api(admin_api).read_custom_resource_definition(CRD_NAME)
        assert crd.metadata.annotations["meta.helm.sh/release-namespace"] == first.namespace
    finally:
        second.uninstall()
