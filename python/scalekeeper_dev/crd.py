"""Install scalekeeper's CRD from the chart's one manifest (for tests and ``make run``)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

CRD_MANIFEST = Path(__file__).resolve().parents[2] / "helm" / "scalekeeper" / "files" / "crds" / "deploymentscales.yaml"


def install_crd(api: client.ApiClient, *, timeout: float = 30.0) -> str:
    """Create or update the DeploymentScale CRD and wait until the apiserver serves it; return its name."""
    manifest = yaml.safe_load(CRD_MANIFEST.read_text())
    name = manifest["metadata"]["name"]
    extensions = client.ApiextensionsV1Api(api)
    try:
        extensions.create_custom_resource_definition(manifest)
    except ApiException as error:
        if error.status != 409:
            raise
        current = extensions.read_custom_resource_definition(name)
        manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(name, manifest)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = extensions.read_custom_resource_definition(name).status
        if any(c.type == "Established" and c.status == "True" for c in (status.conditions or ())):
            return str(name)
        time.sleep(0.1)
    raise TimeoutError(f"CRD {name} was not established within {timeout:.0f}s")


def install_crd_on(kubeconfig: Path) -> str:
    """``install_crd`` as the admin of ``kubeconfig`` (a control plane of a test's or benchmark's own)."""
    admin = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        return install_crd(admin)
    finally:
        admin.close()
