"""``make run`` on an existing cluster: demo data, a ready server, working grpcurl commands, a rollout, Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from kubernetes import client

from polling import eventually
from scalekeeper_dev import devrun
from scalekeeper_dev.testcluster import TestCluster

REPO = Path(__file__).resolve().parents[2]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_make_run_serves_demo_data_and_stops_on_ctrl_c(
    test_cluster: TestCluster, admin_api: client.ApiClient, tmp_path: Path
) -> None:
    assert all(port_is_free(port) for port in (8080, 8443, 8444)), "make run's ports are taken"
    output = tmp_path / "run.out"
    env = {**os.environ, "KUBECONFIG": str(test_cluster.admin_kubeconfig)}
    with output.open("wb") as sink:
        run = subprocess.Popen(
            [sys.executable, "-m", "scalekeeper_dev", "run", f"--dev-dir={tmp_path / 'dev'}"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(
            lambda: "Ctrl-C stops everything" in output.read_text(), "make run to report it is serving", timeout=90
        )
        demo = client.AppsV1Api(admin_api).list_namespaced_deployment(devrun.DEMO_NAMESPACE).items
        assert {d.metadata.name for d in demo} >= set(devrun.DEMO_DEPLOYMENTS)

        # The printed commands work as pasted: `list` through reflection, and a Get.
        commands = [line.strip() for line in output.read_text().splitlines() if "grpcurl" in line]
        for command in (commands[0], next(c for c in commands if c.endswith("/GetReplicas"))):
            result = subprocess.run(shlex.split(command), cwd=REPO, capture_output=True, text=True, check=False)
            assert result.returncode == 0, (command, result.stderr)
        assert (
            "scalekeeper.v1.ReplicaService"
            in subprocess.run(shlex.split(commands[0]), cwd=REPO, capture_output=True, text=True, check=True).stdout
        )

        # The demo of the printed next steps: SetReplicas 5, and ready_replicas reaches 5 in a
        # WatchReplicas stream and in GetReplicas as the Pods become Ready.
        watch_command = next(c for c in commands if c.endswith("/WatchReplicas"))
        with (tmp_path / "watch.out").open("wb") as watch_sink:
            watch = subprocess.Popen(shlex.split(watch_command), cwd=REPO, stdout=watch_sink, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: '"name": "web"' in (tmp_path / "watch.out").read_text(), "the watch's snapshot")
            set_command = next(c for c in commands if c.endswith("/SetReplicas"))
            assert '"replicas":5' in set_command
            subprocess.run(shlex.split(set_command), cwd=REPO, capture_output=True, text=True, check=True)
            eventually(
                lambda: '"ready_replicas": 5' in (tmp_path / "watch.out").read_text(),
                "WatchReplicas to stream ready_replicas 5",
                timeout=60,
            )
        finally:
            watch.terminate()
            watch.wait(timeout=10)
        get_command = next(c for c in commands if c.endswith("/GetReplicas"))
        got = subprocess.run(shlex.split(get_command), cwd=REPO, capture_output=True, text=True, check=True).stdout
        assert '"ready_replicas": 5' in got, got

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        eventually(lambda: all(port_is_free(port) for port in (8080, 8443, 8444)), "the server to be gone", timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
