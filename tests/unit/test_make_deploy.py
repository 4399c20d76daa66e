"""`make deploy` creates the Secrets the chart then mounts, whatever the release is called.

kind is not available here, so `make -n deploy` (which prints the recipe
without running it) gives the Secret names and the `--set` values, and the
chart is rendered with those values: the names must meet.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from chart_support import REPO, one, render


def _deploy_recipe(release: str, namespace: str) -> str:
    result = subprocess.run(
        ["make", "-n", "deploy", f"RELEASE={release}", f"DEPLOY_NAMESPACE={namespace}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout.replace("\\\n", " ")


@pytest.mark.parametrize("release", ["edge", "scalekeeper-prod"])
def test_deploy_secrets_are_the_ones_the_chart_mounts(release: str) -> None:
    recipe = _deploy_recipe(release, "ops")
    created = set(re.findall(r"create secret generic (\S+)", recipe))
    (upgrade,) = [line for line in recipe.splitlines() if " upgrade --install " in line]
    words = shlex.split("upgrade --install" + upgrade.split(" upgrade --install", 1)[1])
    assert words[:4] == ["upgrade", "--install", release, "helm/scalekeeper"]
    settings = [words[i + 1] for i, word in enumerate(words) if word == "--set" and "$" not in words[i + 1]]
    objects = render(set_values=settings, release=release, namespace="ops")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (tls,) = [volume["secret"]["secretName"] for volume in pod["volumes"] if volume["name"] == "tls"]
    assert tls in created
    test_client = one(objects, "Pod")["spec"]["volumes"][0]["secret"]["secretName"]
    assert test_client in created
    # The third is test-upgrade's writer, which only its traffic pod mounts.
    assert created == {tls, test_client, f"{release}-writer-tls"}
