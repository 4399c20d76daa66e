from __future__ import annotations

from pathlib import Path

import pytest

from scalekeeper import config


def test_defaults_need_no_arguments() -> None:
    settings = config.load([], env={})
    assert (settings.grpc_port, settings.http_port, settings.health_port) == (8443, 8444, 8080)
    assert settings.kubeconfig is None
    assert settings.controller
    assert settings.leader_election
    assert settings.namespaces == ()


def test_environment_sets_and_flags_override() -> None:
    env = {
        "SCALEKEEPER_GRPC_PORT": "9000",
        "SCALEKEEPER_WRITERS": "a, b,,",
        "SCALEKEEPER_CONTROLLER": "false",
        "SCALEKEEPER_NAMESPACES": "team-a,team-b",
        "KUBECONFIG": "/tmp/kc",
        "POD_NAMESPACE": "ops",
    }
    settings = config.load(["--grpc-port", "9100", "--controller"], env=env)
    assert settings.grpc_port == 9100
    assert settings.writers == frozenset({"a", "b"})
    assert settings.controller
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.kubeconfig == Path("/tmp/kc")
    assert settings.leader_election_namespace == "ops"
    assert not config.load([], env=env).controller


@pytest.mark.parametrize(
    "argv",
    [
        ["--watch-timeout-seconds", "300", "--watch-read-timeout-seconds", "300"],
        ["--max-replicas", "0"],
        ["--workers", "0"],
        ["--grpc-port", "eighty"],
        ["--log-level", "chatty"],
    ],
)
def test_bad_settings_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        config.load(argv, env={})
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(("raw", "value"), [("true", True), (" Yes ", True), ("1", True), ("off", False), ("0", False)])
def test_boolean_environment_variables(raw: str, value: bool) -> None:
    assert config.load([], env={"SCALEKEEPER_CONTROLLER": raw}).controller is value


@pytest.mark.parametrize("raw", ["flase", "", "enabled", "2", "tru"])
def test_a_boolean_environment_variable_that_is_no_boolean_stops_start_up(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        config.load([], env={"SCALEKEEPER_LEADER_ELECTION": raw})
    assert exited.value.code == 2
    assert "SCALEKEEPER_LEADER_ELECTION" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--namespaces", "team-a,Team_B"], ["--drain-seconds", "-1"]])
def test_settings_a_typo_would_silently_break_exit_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        config.load(argv, env={})
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err
