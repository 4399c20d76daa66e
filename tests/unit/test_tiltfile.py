"""`tilt up` loads the Tiltfile, and what it hands Tilt fits the chart and the image builder.

Tilt cannot run here (no kind), but its language can: the Tiltfile is run
under go.starlark.net, the interpreter Tilt embeds, with stubs that have the
signatures of Tilt's builtins (tests/tilt_stubs.py). The values it passes to
`helm` are then rendered with the real chart.
"""

from __future__ import annotations

import shlex

import pytest
import starlark_go
import yaml

from chart_support import CHART, KUBE_VERSION, REPO, one, render
from scalekeeper_dev import image
from tilt_stubs import TiltfileFailed, TiltRun, execute

TILTFILE = (REPO / "Tiltfile").read_text()
CERTS_PRESENT = {".dev/certs/server.crt"}


@pytest.fixture(scope="module")
def tilt() -> TiltRun:
    return execute(TILTFILE, TiltRun(existing_paths=CERTS_PRESENT))


def test_the_interpreter_has_tilts_dialect() -> None:
    # Python joins adjacent string literals; Tilt's Starlark refuses them.
    with pytest.raises(starlark_go.SyntaxError, match=r"T:1:14: got string literal, want ','"):
        execute('print("a" "b")\n', TiltRun(), filename="T")


def test_a_wrong_argument_name_fails_as_in_tilt() -> None:
    with pytest.raises(starlark_go.EvalError, match="unexpected keyword argument 'kubeversion'"):
        execute('helm("helm/scalekeeper", kubeversion="1.37.0")\n', TiltRun())


def test_without_dev_certificates_the_tiltfile_stops() -> None:
    with pytest.raises(TiltfileFailed, match="make certs"):
        execute(TILTFILE, TiltRun())


def test_the_image_is_built_by_the_builder_selection(tilt: TiltRun) -> None:
    build = tilt.one("custom_build")
    assert build["ref"] == "scalekeeper-dev"
    assert build["skips_local_docker"] is True
    assert build["disable_push"] is True
    steps = [shlex.split(step) for step in build["command"].split(" && ")]
    select, load = steps
    # The ref Tilt expects, built by scalekeeper_dev.image (Nix >= 2.18 with flakes, else the Dockerfile).
    assert select[:3] == [".venv/bin/python", "-m", "scalekeeper_dev"]
    command = select[3:]
    assert command[0] == "image"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--ref"] == "$EXPECTED_REF"
    assert options["--flavor"] in image.FLAVORS
    assert image.FLAVORS[options["--flavor"]].repository == build["ref"]
    assert load == ["kind", "load", "image-archive", options["--archive"], "--name", "scalekeeper"]
    # Every input of either builder rebuilds the image.
    for path in ("flake.nix", "flake.lock", "nix", "uv.lock", "Dockerfile", "docker", "python"):
        assert path in build["deps"], path
        assert (REPO / path).exists(), path
    fall_back, sync = build["live_update"]
    assert fall_back["builtin"] == "fall_back_on"
    assert "python" not in fall_back["files"]
    assert (sync["builtin"], sync["local_path"], sync["remote_path"]) == ("sync", "python", "/app/python")


def test_helm_gets_the_chart_and_a_kube_version_it_accepts(tilt: TiltRun) -> None:
    chart = tilt.one("helm")
    assert REPO / chart["path"] == CHART
    assert (chart["name"], chart["namespace"]) == ("scalekeeper", "scalekeeper")
    # Without it Tilt's `helm template` assumes v1.20, which the chart's kubeVersion refuses.
    assert chart["kube_version"] == KUBE_VERSION
    assert "image.repository=scalekeeper-dev" in chart["set"]


def test_the_tilt_values_render_and_match_the_port_forwards_and_secret(tilt: TiltRun) -> None:
    chart = tilt.one("helm")
    objects = render(set_values=chart["set"], release=chart["name"], namespace=chart["namespace"])
    resource = tilt.one("k8s_resource")
    deployment = one(objects, "Deployment", resource["workload"])
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == tilt.one("custom_build")["ref"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False  # live_update writes the sources
    exposed = {port["containerPort"] for port in container["ports"]}
    forwards = resource["port_forwards"]
    assert {(f["local_port"], f["container_port"]) for f in forwards} == {(8443, 8443), (8444, 8444), (8080, 8080)}
    assert {f["container_port"] for f in forwards} <= exposed
    # The TLS Secret the Tiltfile creates is the one the chart mounts.
    (secret_command,) = [call["command"] for call in tilt.calls["local"]]
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secret_command[4] in mounted
    namespace = yaml.safe_load(tilt.calls["blob"][0]["contents"])
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": chart["namespace"]}}
