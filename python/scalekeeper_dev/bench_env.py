"""What ``make bench`` runs against: the control plane, certificates, the two servers, the machine.

The benchmark must measure the server an operator would run, so scalekeeper
is started as ``python -m scalekeeper`` with ordinary flags (a subprocess, as
the integration tests do), and the comparison server
(:mod:`scalekeeper_dev.bare_server`) with the same certificates. Timing of
start-up (process start to ``/readyz`` 200) is only meaningful that way too.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from scalekeeper_dev import devcerts
from scalekeeper_dev.controlplane import ControlPlane, free_port
from scalekeeper_dev.localserver import server_command

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTO_FILE = PROTO_ROOT / "scalekeeper" / "v1" / "replicas.proto"
WRITER = devcerts.DEV_IDENTITIES["writer"][1]
READER = devcerts.DEV_IDENTITIES["reader"][1]


class BenchError(RuntimeError):
    pass


def wait_until(condition: Any, what: str, timeout: float, interval: float = 0.02) -> Any:
    """Poll ``condition()`` until truthy (returned); BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- certificates --------------------------------------------------------------------------------


class Certs(devcerts.DevCertFiles):
    @classmethod
    def create(cls, directory: Path) -> Certs:
        """A fresh set in the layout of ``make certs`` (CA, server, writer and reader)."""
        devcerts.write_dev_certs(directory, force=True)
        return cls(directory)

    def grpc_credentials(self, role: str = "writer") -> Any:
        import grpc

        cert, key = self.client(role)
        return grpc.ssl_channel_credentials(self.ca_file.read_bytes(), key.read_bytes(), cert.read_bytes())


# -- processes -------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEKEEPER_")}
    env["PYTHONPATH"] = str(REPO / "python")
    return env


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: current and peak resident memory."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount, _unit = line.split()
            values[key.rstrip(":")] = int(amount) / 1024
    return values["VmRSS"], values["VmHWM"]


class Scalekeeper:
    """``python -m scalekeeper`` as a child process on free loopback ports."""

    def __init__(self, kubeconfig: Path, certs: Certs, log_file: Path, extra_flags: tuple[str, ...] = ()) -> None:
        self.grpc_port, self.http_port, self.health_port = free_port(), free_port(), free_port()
        self.certs = certs
        self.log_file = log_file
        self.argv = server_command(
            certs,
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--health-port={self.health_port}",
            f"--kubeconfig={kubeconfig}",
            f"--readers={READER}",
            f"--writers={WRITER}",
            "--leader-election-namespace=default",
            # Watches that outlive the whole run: a routine watch renewal would
            # otherwise show up in section 2's count of apiserver requests.
            "--watch-timeout-seconds=3600",
            "--watch-read-timeout-seconds=3700",
            *extra_flags,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def target(self) -> str:
        return f"localhost:{self.grpc_port}"

    def start(self) -> Scalekeeper:
        self.started_at = time.monotonic()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=REPO)
        return self

    def health(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def _alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
            raise BenchError(f"scalekeeper exited; log {self.log_file}:\n{tail}")

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from process start until /readyz answered 200."""

        def ready() -> bool:
            self._alive()
            return self.health("/readyz") == 200

        wait_until(ready, "scalekeeper /readyz", timeout, interval=0.01)
        return time.monotonic() - self.started_at

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as answer:
            return parse_metrics(answer.read().decode())

    def stop(self) -> int | None:
        return None if self.process is None else _stop(self.process)


class BareServer:
    """:mod:`scalekeeper_dev.bare_server` as a child process."""

    def __init__(self, certs: Certs, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        self.ready_file = workdir / "bare.ready"
        self.log_file = workdir / "bare-server.log"
        self.argv = [
            sys.executable,
            "-m",
            "scalekeeper_dev.bare_server",
            f"--port={self.port}",
            f"--tls-cert={certs.server_cert}",
            f"--tls-key={certs.server_key}",
            f"--tls-client-ca={certs.ca_file}",
            f"--ready-file={self.ready_file}",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> BareServer:
        self.ready_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=REPO)
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise BenchError(f"bare server exited: {self.log_file.read_text(errors='replace')[-2000:]}")
            return self.ready_file.exists()

        wait_until(ready, "the bare server", 30)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


# -- metrics ---------------------------------------------------------------------------------------

MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    samples: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def metric_sum(samples: dict[MetricKey, float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


APISERVER_RESOURCES = ("deployments", "deploymentscales", "horizontalpodautoscalers")


def apiserver_requests(plane: ControlPlane) -> dict[tuple[str, str], float]:
    """apiserver_request_total for the resources scalekeeper reads, by (resource, verb)."""
    status, body = plane.request("GET", "/metrics", timeout=30.0)
    if status != 200 or "text" not in body:
        raise BenchError(f"apiserver /metrics answered {status}")
    totals: dict[tuple[str, str], float] = {}
    for (name, labels), value in parse_metrics(body["text"]).items():
        label = dict(labels)
        if name == "apiserver_request_total" and label.get("resource") in APISERVER_RESOURCES:
            key = (label["resource"], label.get("verb", ""))
            totals[key] = totals.get(key, 0.0) + value
    return totals


# -- the machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def describe_machine(ghz: Path, apiserver: Path, etcd: Path) -> dict[str, str]:
    import grpc

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": _cpu_model(),
        "memory": _memory_gib(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "grpcio": grpc.__version__,
        "ghz": _version([str(ghz), "--version"]),
        "kube-apiserver": _version([str(apiserver), "--version"]),
        "etcd": _version([str(etcd), "--version"]),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
