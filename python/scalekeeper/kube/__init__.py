"""Access to the Kubernetes API: client construction and the resources scalekeeper uses.

Authentication, TLS and token refresh come from the official client's asyncio
package (``kubernetes.aio``); on top of it, ``KubeClient`` offers the handful
of raw JSON calls scalekeeper makes. Raw JSON, not the generated models: the
cache projects only a few fields, and building full models for every object
of a 10,000-Deployment list is what makes Python controllers slow.
"""
