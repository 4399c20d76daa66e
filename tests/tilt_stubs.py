"""Stubs of the Tilt builtins the Tiltfile calls, for running it under go.starlark.net.

Tilt embeds go.starlark.net; the `starlark-go` package binds the same
interpreter, so a Tiltfile that Tilt cannot parse fails here with Tilt's
message. Each stub has the parameter names, order and defaults of Tilt's API
reference (tilt-dev/tilt, internal/tiltfile/api/__init__.py and os/), so a
misspelt or missing argument fails as it would in Tilt; calls are recorded
for the test to inspect.

go.starlark.net's Python bindings cannot predeclare a module value, so
`os.getenv` and `os.path.exists` are exposed as `os_getenv` and
`os_path_exists`, and the source is rewritten to match. The rewrite keeps
every line and column (same length), so error positions are Tilt's.
"""

# Tilt's signatures copied as they are: positional, camelCase, list defaults, `set`/`dir` names.
# ruff: noqa: B006, PLR0917

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import starlark_go

# Tilt's interpreter options (top-level `if`, sets, recursion: internal/tiltfile/starkit).
starlark_go.configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)

_MODULE_MEMBER = re.compile(r"\bos((?:\.[a-z_]+)+)\b")


class TiltfileFailed(Exception):
    """The Tiltfile called fail()."""


@dataclass
class TiltRun:
    """What one execution of a Tiltfile handed to Tilt."""

    env: dict[str, str] = field(default_factory=dict)
    existing_paths: set[str] = field(default_factory=set)
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failure: str | None = None

    def one(self, builtin: str) -> dict[str, Any]:
        found = self.calls.get(builtin, [])
        assert len(found) == 1, f"expected one call of {builtin}, got {len(found)}"
        return found[0]

    def _record(self, builtin: str, **arguments: Any) -> dict[str, Any]:
        self.calls.setdefault(builtin, []).append(arguments)
        return {"builtin": builtin, **arguments}

    def builtins(self) -> dict[str, Callable[..., Any]]:
        record = self._record

        def allow_k8s_contexts(contexts):
            record("allow_k8s_contexts", contexts=contexts)

        def fail(msg):
            self.failure = msg
            raise TiltfileFailed(msg)

        def watch_settings(ignore):
            record("watch_settings", ignore=ignore)

        def custom_build(
            ref,
            command,
            deps,
            tag="",
            disable_push=False,
            skips_local_docker=False,
            live_update=[],
            match_in_env_vars=False,
            ignore=[],
            entrypoint=[],
            command_bat_val="",
            outputs_image_ref_to="",
            command_bat="",
            image_deps=[],
        ):
            record(
                "custom_build",
                ref=ref,
                command=command,
                deps=deps,
                tag=tag,
                disable_push=disable_push,
                skips_local_docker=skips_local_docker,
                live_update=live_update,
                outputs_image_ref_to=outputs_image_ref_to,
            )

        def fall_back_on(files):
            return record("fall_back_on", files=files)

        def sync(local_path, remote_path):
            return record("sync", local_path=local_path, remote_path=remote_path)

        def blob(contents):
            record("blob", contents=contents)
            return contents

        def local(command, quiet=False, command_bat="", echo_off=False, env={}, dir="", stdin=None):
            record("local", command=command, quiet=quiet, echo_off=echo_off, env=env, dir=dir)
            return f"# output of {command!r}\n"

        def k8s_yaml(yaml, allow_duplicates=False):
            record("k8s_yaml", yaml=yaml, allow_duplicates=allow_duplicates)

        def helm(pathToChartDir, name="", namespace="", values=[], set=[], kube_version=""):
            record(
                "helm", path=pathToChartDir, name=name, namespace=namespace, values=values, set=set,
                kube_version=kube_version,
            )  # fmt: skip
            return f"# helm template {pathToChartDir}\n"

        def port_forward(local_port, container_port=None, name=None, link_path=None, host=None):
            return record(
                "port_forward", local_port=local_port, container_port=container_port, name=name, link_path=link_path
            )

        def k8s_resource(
            workload="",
            new_name="",
            port_forwards=[],
            extra_pod_selectors=[],
            trigger_mode=None,
            resource_deps=[],
            objects=[],
            auto_init=True,
            pod_readiness="",
            links=[],
            labels=[],
            discovery_strategy="",
        ):
            record("k8s_resource", workload=workload, port_forwards=port_forwards, labels=labels)

        def os_getenv(key, default=None):
            return self.env.get(key, default)

        def os_path_exists(path):
            return path in self.existing_paths

        return {name: value for name, value in locals().items() if callable(value) and name != "record"}


def execute(source: str, run: TiltRun, filename: str = "Tiltfile") -> TiltRun:
    """Run a Tiltfile's source with the stubs; raises starlark_go errors or TiltfileFailed."""
    stubs = run.builtins()
    unknown = sorted({"os_" + m.group(1)[1:].replace(".", "_") for m in _MODULE_MEMBER.finditer(source)} - set(stubs))
    assert not unknown, f"the Tiltfile uses Tilt builtins without a stub here: {unknown}"
    rewritten = _MODULE_MEMBER.sub(lambda m: "os" + m.group(1).replace(".", "_"), source)
    interpreter = starlark_go.Starlark(globals=stubs)
    try:
        interpreter.exec(rewritten, filename=filename)
    except starlark_go.EvalError as error:
        # A stub's exception comes back as an EvalError; fail() is told apart by what it recorded.
        if run.failure is not None:
            raise TiltfileFailed(run.failure) from error
        raise
    return run
