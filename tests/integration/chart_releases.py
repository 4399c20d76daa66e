"""Chart releases installed into the test cluster: shared by the chart's integration tests.

The fixtures using these (``make_release``, ``extra_namespaces``) are in conftest.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException

# tests/ is on sys.path: pytest inserts the directory of the rootmost conftest.py.
from chart_support import CHART, helm

CRD_NAME = "deploymentscales.scalekeeper.dev"


class Release:
    """One chart release, installed with the admin kubeconfig, uninstalled at teardown."""

    def __init__(self, kubeconfig: Path, name: str, namespace: str) -> None:
        self.kubeconfig, self.name, self.namespace = kubeconfig, name, namespace
        self.fullname = f"{name}-scalekeeper"
        # The watch RBAC outside the release namespace carries that namespace in its name.
        self.cluster_role = f"{namespace}-{self.fullname}"
        self.service_account = self.fullname
        self.lease = f"{self.fullname}-controller"
        self.notes = ""

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return helm(*args, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace, check=check)

    def try_install(self, *settings: str, verb: str = "install") -> subprocess.CompletedProcess[str]:
        args = [verb, self.name, str(CHART)]
        for item in settings:
            args += ["--set", item]
        return self.helm(*args, check=False)

    def install(self, *settings: str, verb: str = "install") -> str:
        """Install or upgrade; returns helm's output (with the rendered NOTES.txt)."""
        result = self.try_install(*settings, verb=verb)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--wait=false", check=False)


def adopt_crd(api: client.ApiClient, release: Release) -> None:
    """Hand an existing CRD (other tests apply the same file) to this release.

    Helm refuses to install over an object it does not own; these are the
    ownership marks it checks. The CRD's content is the same file either way.
    """
    extensions = client.ApiextensionsV1Api(api)
    try:
        extensions.read_custom_resource_definition(CRD_NAME)
    except ApiException as error:
        if error.status == 404:
            return
        raise
    extensions.patch_custom_resource_definition(
        CRD_NAME,
        {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": release.name,
                    "meta.helm.sh/release-namespace": release.namespace,
                },
            }
        },
    )
