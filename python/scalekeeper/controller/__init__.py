"""The DeploymentScale controller: leader-elected workers that keep Deployments at their desired count.

Public API for the app wiring: ``Controller``, ``LeaderElector`` and ``LeaseConfig``.
"""

from scalekeeper.controller.controller import Controller
from scalekeeper.controller.leader import LeaderElector, LeaseConfig

__all__ = ["Controller", "LeaderElector", "LeaseConfig"]
