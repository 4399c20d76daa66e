"""A real Kubernetes node on this host: containerd, kubelet, kube-proxy and cluster DNS.

The delivery half of the project (image, chart, probes, PDB, rolling upgrade,
leader failover between pods) needs pods that really run. kind would need a
Docker daemon; this package runs the node's components directly, each in the
node's own network namespace, supervised like the control plane. Linux and
root only (:func:`host.unsupported_reason` says why elsewhere).

- :mod:`.host`: can this host run a node; the distribution packages it needs.
- :mod:`.network`: the node's network namespace, its veth link to the host, routes.
- :mod:`.configs`: containerd, kubelet, kube-proxy, CNI and CoreDNS configuration.
- :mod:`.rbac`: what the kubelet and CoreDNS may do.
- :mod:`.pause`: the pod sandbox image, built from Kubernetes' pause.c.
- :mod:`.realnode`: start, wait for Ready, load images, stop.
- :mod:`.teardown`: what the node's processes leave behind, and its removal.
- :mod:`.realcluster`: the control plane (no simulated nodes) with the real node.
- :mod:`.cli`: ``node-support`` and ``node-load-image``.
"""
