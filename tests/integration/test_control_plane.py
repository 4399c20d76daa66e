"""The harness's control plane is a real Kubernetes API: RBAC, client certificates, /scale, CRDs, TokenRequest.

Everything the product's integration tests rely on is checked here first, so
a broken harness fails with a clear message instead of as a product bug. The
control plane's processes (fault injection, start, stop, the cluster-up CLI)
are covered by test_control_plane_lifecycle.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from polling import eventually
from scalekeeper_dev import kubeconfig, manifests
from scalekeeper_dev.testcluster import TestCluster

# A CRD of the harness's own, independent of the product's DeploymentScale.
WIDGET_GROUP = "harness.scalekeeper.dev"
WIDGET_PLURAL = "widgets"


def _whoami(api: ApiClient) -> client.V1UserInfo:
    review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
    return review.status.user_info


def _grant_deployment_reader(admin_api: ApiClient, namespace: str, subject: dict[str, str]) -> None:
    rbac = client.RbacAuthorizationV1Api(admin_api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role.from_dict(
            {
                "metadata": {"name": "deployment-reader"},
                "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}],
            }
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding.from_dict(
            {
                "metadata": {"name": "deployment-reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployment-reader"},
                "subjects": [subject],
            }
        ),
    )


def test_admin_is_allowed_and_an_unprivileged_user_is_denied(
    admin_api: ApiClient, api_as: Callable[..., ApiClient], namespace: str
) -> None:
    client.AppsV1Api(admin_api).list_namespaced_deployment(namespace)
    with pytest.raises(ApiException) as denied:
        client.AppsV1Api(api_as("nobody")).list_namespaced_deployment(namespace)
    assert denied.value.status == 403


def test_user_and_groups_come_from_the_client_certificate_and_rbac_applies_to_groups(
    admin_api: ApiClient, api_as: Callable[..., ApiClient], namespace: str
) -> None:
    carol = api_as("carol", ["deployment-readers", "other"])
    user = _whoami(carol)
    assert user.username == "carol"
    assert {"deployment-readers", "other", "system:authenticated"} <= set(user.groups or [])

    _grant_deployment_reader(
        admin_api, namespace, {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "deployment-readers"}
    )
    # RBAC changes reach the authorizer through an informer: allowed *eventually*.
    eventually(
        lambda: client.AppsV1Api(carol).list_namespaced_deployment(namespace),
        "carol's RBAC to apply",
        retry_on=(ApiException,),
    )
    with pytest.raises(ApiException) as denied:
        client.AppsV1Api(carol).list_deployment_for_all_namespaces()
    assert denied.value.status == 403


def test_expired_or_foreign_client_certificates_are_rejected(test_cluster: TestCluster, tmp_path: Path) -> None:
    if test_cluster.client_ca is None or test_cluster.ca_pem is None:
        pytest.skip("the cluster's client CA is not known")
    from scalekeeper_dev import pki

    now = dt.datetime.now(dt.UTC)
    expired = test_cluster.client_ca.issue_client(
        "late", not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1)
    )
    foreign = pki.CertificateAuthority.create("foreign").issue_client("mallory", organizations=["system:masters"])
    for name, cert in (("expired", expired), ("foreign", foreign)):
        path = kubeconfig.write_kubeconfig(
            tmp_path / name,
            server=test_cluster.server,
            ca_pem=test_cluster.ca_pem,
            client_cert_pem=cert.cert_pem,
            client_key_pem=cert.key_pem,
        )
        from kubernetes import config

        with config.new_client_from_config(config_file=str(path)) as api, pytest.raises(ApiException) as error:
            client.CoreV1Api(api).list_namespace()
        # The TLS handshake succeeds (client certs are optional); the user is anonymous, then denied.
        assert error.value.status in (401, 403), name


def test_deployment_is_created_and_scaled_through_the_scale_subresource(admin_api: ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(admin_api)
    apps.create_namespaced_deployment(namespace, manifests.deployment("web", replicas=1))

    scale = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3

    # Optimistic concurrency through /scale: a stale resourceVersion conflicts. The
    # deployment controller writes the status meanwhile, so the first write is a
    # read-modify-write retried on conflict, as any client does.
    def read_and_replace() -> client.V1Scale | None:
        current = apps.read_namespaced_deployment_scale("web", namespace)
        try:
            apps.replace_namespaced_deployment_scale(
                "web", namespace, client.V1Scale(metadata=current.metadata, spec=client.V1ScaleSpec(replicas=5))
            )
        except ApiException as error:
            if error.status != 409:
                raise
            return None
        return current

    current = eventually(read_and_replace, "a read-modify-write of /scale")
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment_scale(
            "web", namespace, client.V1Scale(metadata=current.metadata, spec=client.V1ScaleSpec(replicas=7))
        )
    assert conflict.value.status == 409
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 5


def _install_widget_crd(admin_api: ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(admin_api)
    name = f"{WIDGET_PLURAL}.{WIDGET_GROUP}"
    crd = client.V1CustomResourceDefinition.from_dict(
        {
            "metadata": {"name": name},
            "spec": {
                "group": WIDGET_GROUP,
                "scope": "Namespaced",
                "names": {"plural": WIDGET_PLURAL, "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {"size": {"type": "integer", "minimum": 0}},
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    try:
        extensions.create_custom_resource_definition(crd)
    except ApiException as error:
        if error.status != 409:  # an earlier run on a reused cluster
            raise

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    eventually(established, "the CRD to be established")


def test_crd_is_installed_and_custom_resources_are_validated(admin_api: ApiClient, namespace: str) -> None:
    _install_widget_crd(admin_api)
    custom = client.CustomObjectsApi(admin_api)

    def create(name: str, size: object) -> dict[str, Any]:
        body = {
            "apiVersion": f"{WIDGET_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"size": size},
        }
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            WIDGET_GROUP, "v1", namespace, WIDGET_PLURAL, body
        )
        return created

    # The REST endpoint can lag Established by a moment.
    created = eventually(lambda: create("small", 2), "the custom resource to be created", retry_on=(ApiException,))
    assert created["spec"]["size"] == 2
    got = custom.get_namespaced_custom_object(WIDGET_GROUP, "v1", namespace, WIDGET_PLURAL, "small")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiException) as invalid:
        create("negative", -1)
    assert invalid.value.status == 422


def test_service_account_token_authenticates_and_rbac_applies(
    admin_api: ApiClient,
    api_as_service_account: Callable[[str, str], ApiClient],
    namespace: str,
) -> None:
    api = api_as_service_account(namespace, "scalekeeper")
    assert _whoami(api).username == f"system:serviceaccount:{namespace}:scalekeeper"
    with pytest.raises(ApiException) as denied:
        client.AppsV1Api(api).list_namespaced_deployment(namespace)
    assert denied.value.status == 403

    _grant_deployment_reader(
        admin_api, namespace, {"kind": "ServiceAccount", "name": "scalekeeper", "namespace": namespace}
    )
    eventually(
        lambda: client.AppsV1Api(api).list_namespaced_deployment(namespace),
        "the ServiceAccount's RBAC to apply",
        retry_on=(ApiException,),
    )


def test_a_forged_token_is_unauthorized(test_cluster: TestCluster, tmp_path: Path) -> None:
    if test_cluster.ca_pem is None:
        pytest.skip("the cluster's CA is not in the kubeconfig")
    from kubernetes import config

    path = kubeconfig.write_kubeconfig(
        tmp_path / "forged", server=test_cluster.server, ca_pem=test_cluster.ca_pem, token="not-a-token"
    )
    with config.new_client_from_config(config_file=str(path)) as api, pytest.raises(ApiException) as error:
        client.CoreV1Api(api).list_namespace()
    assert error.value.status == 401
