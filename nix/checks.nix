# `nix flake check`: lint, unit tests and the chart, all inside the sandbox
# (no network, no Kubernetes). Integration tests need a control plane and run
# with `make test` instead.
{
  pkgs,
  lib,
  devEnv,
  root,
}:
let
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/pyproject.toml")
      (root + "/python")
      (root + "/tests")
      (root + "/helm")
      # test_proto_generated and test_design_doc compare against these.
      (root + "/proto")
      (root + "/docs")
      # The delivery files the unit tests read (Tiltfile, Dockerfile, reloader, ...).
      (root + "/Tiltfile")
      (root + "/Dockerfile")
      (root + "/.dockerignore")
      (root + "/docker")
      (root + "/nix")
      (root + "/uv.lock")
      (root + "/README.md")
      (root + "/Makefile")
    ];
  };
in
{
  ruff = pkgs.runCommand "scalekeeper-ruff" { nativeBuildInputs = [ pkgs.ruff ]; } ''
    cd ${src}
    ruff check --no-cache .
    ruff format --no-cache --check .
    touch $out
  '';

  unit-tests = pkgs.runCommand "scalekeeper-unit-tests" { nativeBuildInputs = [ devEnv ]; } ''
    cp -r ${src} src && chmod -R u+w src && cd src
    export HOME=$TMPDIR PYTHONPATH=$PWD/python
    # Chart rendering needs the pinned helm, which the test harness builds
    # with Go (no network here): the `chart` check below covers the chart.
    # test_nix_files and the image.nix evaluation need nix-instantiate
    # (evaluating this flake already parsed them); `make image`/`make deploy`
    # need the repo's .venv.
    python -m pytest -p no:cacheprovider tests/unit \
      --ignore=tests/unit/test_chart_render.py --ignore=tests/unit/test_chart_options.py \
      --ignore=tests/unit/test_nix_files.py --ignore=tests/unit/test_make_deploy.py \
      -k "not nix_images and not make_image and not tilt_values_render"
    touch $out
  '';

  chart = pkgs.runCommand "scalekeeper-chart" { nativeBuildInputs = [ pkgs.kubernetes-helm ]; } ''
    export HOME=$TMPDIR
    for values in ${src}/helm/scalekeeper/ci/*-values.yaml; do
      helm lint --strict ${src}/helm/scalekeeper --values "$values"
      helm template check ${src}/helm/scalekeeper --values "$values" --kube-version 1.37.0 > /dev/null
    done
    touch $out
  '';
}
