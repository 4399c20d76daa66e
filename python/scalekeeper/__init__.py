"""scalekeeper: manages the replica count of Kubernetes Deployments.

Layers, highest first (enforced by the import-linter contract in pyproject.toml):
``app`` assembles everything; ``transport`` (gRPC, HTTP, health) and
``controller`` sit on ``service``/``cache``; ``cache`` sits on ``kube``;
``config``, ``errors``, ``metrics``, ``tls`` and the generated ``v1`` API are
the foundation and import nothing of ours above them.
"""

__version__ = "0.1.0"
