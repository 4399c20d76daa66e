"""The local control plane with one real node instead of simulated ones.

Order matters both ways: the node's network and CA come first (the apiserver
listens on the host's end of the node's veth and needs the node's CA to call
the kubelet), then the control plane, then the node's components; on the way
down the node's components go first, then the control plane, then the node's
network (the apiserver's address).
"""

from __future__ import annotations

from pathlib import Path

from scalekeeper_dev.controlplane import Components, ControlPlane
from scalekeeper_dev.node.realnode import RealNode


class RealNodeCluster:
    """Use as a context manager; ``plane`` and ``node`` once started."""

    def __init__(self, workdir: Path, *, ready_timeout: float = 120.0) -> None:
        self.workdir = workdir.resolve()
        self.ready_timeout = ready_timeout
        self.node = RealNode(self.workdir / "node", log_dir=self.workdir)
        self.plane: ControlPlane | None = None

    def __enter__(self) -> RealNodeCluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self.node.prepare()
            self.plane = ControlPlane(
                self.workdir,
                components=Components.CONTROLLERS,
                apiserver_address=self.node.network.host_address,
                ready_timeout=self.ready_timeout,
                extra_apiserver_args=self.node.apiserver_args(),
            )
            self.plane.start()
            self.node.start(self.plane.server, self.plane.ca, self.plane.request)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # The apiserver deletes its Lease through its own address on the way out: the
        # node's network (where that address lives) goes last.
        self.node.stop_components()
        if self.plane is not None:
            self.plane.stop()
        self.node.stop()

    @property
    def server(self) -> str:
        return self.plane.server if self.plane is not None else ""

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def binaries(self) -> dict[str, Path]:
        return {**(self.plane.binaries if self.plane else {}), **self.node.binaries}

    @property
    def pids(self) -> dict[str, int]:
        return {**(self.plane.pids if self.plane else {}), **self.node.pids}

    def startup_summary(self) -> str:
        node = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.node.ready_after.items())
        plane = self.plane.startup_summary() if self.plane is not None else ""
        return f"{plane}; real node ready: {node}"
