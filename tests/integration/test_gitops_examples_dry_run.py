"""The README's GitOps example objects are accepted by the apiserver as a GitOps tool would apply them.

A server-side dry run with strict field validation checks the Deployment against
apps/v1 and the DeploymentScale against the CRD installed from
helm/scalekeeper/files/crds/ (schema, ranges, unknown fields), without storing anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from scalekeeper_dev import toolchain
from scalekeeper_dev.testcluster import TestCluster

APP = Path(__file__).resolve().parents[2] / "examples" / "gitops" / "app"


def test_the_example_app_validates_against_the_apiserver_and_the_crd(
    test_cluster: TestCluster, namespace: str, scalekeeper_crd: str
) -> None:
    result = subprocess.run(
        [
            str(toolchain.ensure("kubectl")),
            f"--kubeconfig={test_cluster.admin_kubeconfig}",
            f"--namespace={namespace}",
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=argocd-controller",
            f"--filename={APP}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == [
        "deployment.apps/web serverside-applied (server dry run)",
        "deploymentscale.scalekeeper.dev/web serverside-applied (server dry run)",
    ]
