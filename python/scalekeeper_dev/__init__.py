"""Developer harness for scalekeeper: pinned tools, a throw-away PKI and a real control plane.

Never shipped (the wheel contains only ``python/scalekeeper``). Modules:
``toolchain`` builds/locates the pinned binaries, ``pki`` issues certificates,
``kubeconfig`` writes credentials files, ``controlplane`` runs etcd +
kube-apiserver, and ``__main__`` is the CLI behind ``make tools``,
``make certs``, ``make cluster-up`` and ``make cluster-down``.
"""
