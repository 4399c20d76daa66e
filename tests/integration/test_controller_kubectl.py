"""A DeploymentScale as a user drives it: ``kubectl apply``, ``kubectl scale``, ``kubectl get``, the CRD's schema.

Users never call the controller; they write the DeploymentScale with kubectl
(server-side apply, the CRD's scale subresource) and read it back through the
CRD's printer columns. These tests run the in-process controller against the
real apiserver and the pinned kubectl binary, so a change to the CRD that
breaks what kubectl sends or shows fails here; invalid counts must be refused
by the schema, before the controller sees them. Helpers: ``controller_harness.py``.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml
from controller_harness import GROUP, PLURAL, VERSION, Cluster, Factory, scale_manifest
from kubernetes.client.rest import ApiException

from polling import eventually_async
from scalekeeper_dev.testcluster import TestCluster


async def test_scale_applied_from_yaml_and_scale_subresource(cluster: Cluster, start_controller: Factory) -> None:
    cluster.create_deployment("api", replicas=1)
    await start_controller()
    manifest = """
apiVersion: scalekeeper.dev/v1alpha1
kind: DeploymentScale
metadata:
  name: api
spec:
  replicas: 4
"""
    # What `kubectl apply --server-side -f dscale.yaml` sends.
    cluster.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.ns,
        PLURAL,
        "api",
        yaml.safe_load(manifest),
        field_manager="kubectl",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    await eventually_async(lambda: cluster.deployment_replicas("api") == 4, "Deployment scaled to 4 from YAML")

    # `kubectl scale dscale/api --replicas=6` goes through the CRD's scale subresource.
    cluster.custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, cluster.ns, PLURAL, "api", {"spec": {"replicas": 6}}
    )
    await eventually_async(lambda: cluster.deployment_replicas("api") == 6, "Deployment scaled to 6 via dscale/scale")
    scale = cluster.custom.get_namespaced_custom_object_scale(GROUP, VERSION, cluster.ns, PLURAL, "api")
    await eventually_async(
        lambda: (
            cluster.custom.get_namespaced_custom_object_scale(GROUP, VERSION, cluster.ns, PLURAL, "api")["status"].get(
                "replicas"
            )
            == 6
        ),
        "scale subresource reports status.replicas",
    )
    assert scale["spec"]["replicas"] == 6


async def kubectl(test_cluster: TestCluster, namespace: str, *args: str, stdin: str = "") -> str:
    from scalekeeper_dev import toolchain

    process = await asyncio.create_subprocess_exec(
        str(toolchain.ensure("kubectl")),
        f"--kubeconfig={test_cluster.admin_kubeconfig}",
        f"--namespace={namespace}",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin.encode())
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def test_kubectl_apply_scale_and_get(
    cluster: Cluster, start_controller: Factory, test_cluster: TestCluster
) -> None:
    cluster.create_deployment("shop", replicas=1)
    await start_controller()
    manifest = (
        "apiVersion: scalekeeper.dev/v1alpha1\nkind: DeploymentScale\nmetadata:\n  name: shop\nspec:\n  replicas: 2\n"
    )
    await kubectl(test_cluster, cluster.ns, "apply", "-f", "-", stdin=manifest)
    await eventually_async(lambda: cluster.deployment_replicas("shop") == 2, "Deployment scaled by `kubectl apply`")

    await kubectl(test_cluster, cluster.ns, "scale", "dscale/shop", "--replicas=3")
    await eventually_async(
        lambda: cluster.deployment_replicas("shop") == 3, "Deployment scaled by `kubectl scale dscale`"
    )
    await eventually_async(lambda: cluster.dscale("shop")["status"]["replicas"] == 3, "status.replicas follows")

    await eventually_async(lambda: cluster.dscale("shop")["status"].get("readyReplicas") == 3, "the Pods ready")

    table = await kubectl(test_cluster, cluster.ns, "get", "dscale", "shop", "-o", "wide")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "REASON", "AGE"]
    assert row.split()[:5] == ["shop", "3", "3", "3", "Scaled"]


@pytest.mark.parametrize("replicas", [-1, 10001, "three"])
def test_schema_rejects_invalid_counts(cluster: Cluster, replicas: object) -> None:
    with pytest.raises(ApiException) as raised:
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, cluster.ns, PLURAL, {**scale_manifest("bad", 1), "spec": {"replicas": replicas}}
        )
    assert raised.value.status == 422


def test_schema_requires_replicas(cluster: Cluster) -> None:
    with pytest.raises(ApiException) as raised:
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, cluster.ns, PLURAL, {**scale_manifest("bad", 1), "spec": {}}
        )
    assert raised.value.status == 422
    cluster.create_scale("edge", 10000)  # the maximum is allowed
    cluster.create_scale("zero", 0)
