# `nix develop`: the editable virtualenv plus every tool the Makefile, the
# tests and the Tiltfile call. scalekeeper_dev.toolchain uses a tool found on
# PATH when its major.minor matches the pin, and builds the pinned one with Go
# otherwise, so a nixpkgs that has moved on still gives the tested versions.
{ pkgs, py }:
pkgs.mkShell {
  packages = [
    py.editableEnv
    pkgs.uv
    pkgs.ruff
    pkgs.kubectl
    pkgs.kubernetes # kube-apiserver for the integration tests
    pkgs.etcd
    pkgs.kubernetes-helm
    pkgs.kind
    pkgs.tilt
    pkgs.skopeo # retags the Nix-built image for Tilt (no Docker daemon)
    pkgs.grpcurl
    pkgs.protobuf
    pkgs.go
  ];

  env = {
    # uv must not replace the Nix-built environment or download interpreters.
    UV_NO_SYNC = "1";
    UV_PYTHON = py.python.interpreter;
    UV_PYTHON_DOWNLOADS = "never";
  };

  shellHook = ''
    unset PYTHONPATH
    export REPO_ROOT=$(git rev-parse --show-toplevel)
  '';
}
