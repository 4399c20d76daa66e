# Python package sets from uv.lock (uv2nix) and the virtualenvs built from them.
#
# runtimeEnv: [project.dependencies] + scalekeeper itself (what the image ships).
# devEnv:     every dependency group, for checks.
# editableEnv: devEnv with scalekeeper installed editable from $REPO_ROOT, for
#              the dev shell, so edits under python/ need no rebuild.
{
  pkgs,
  lib,
  workspace,
  pyproject-nix,
  pyproject-build-systems,
  root,
}:
let
  # The interpreter the project targets (requires-python >= 3.11, ruff py311).
  python = pkgs.python311;

  # Prefer wheels: the lock pins wheel hashes, and grpcio/protobuf from sdist
  # would take a long C++ build for no benefit.
  overlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };

  # manylinux wheels link libstdc++ (grpcio, grpcio-tools); pyproject.nix
  # patches ELF files with autoPatchelfHook, which must be able to find it.
  # TODO: confirm on a Nix machine whether more wheels need runtime libraries.
  nativeLibs =
    final: prev:
    lib.optionalAttrs pkgs.stdenv.isLinux (
      lib.genAttrs (builtins.filter (name: prev ? ${name}) [ "grpcio" "grpcio-tools" ]) (
        name:
        prev.${name}.overrideAttrs (old: {
          buildInputs = (old.buildInputs or [ ]) ++ [ pkgs.stdenv.cc.cc.lib ];
        })
      )
    );

  # Build scalekeeper from the shipped sources only, so a change to tests,
  # the chart or docs does not rebuild the package (and the image).
  sourceFilter = final: prev: {
    scalekeeper = prev.scalekeeper.overrideAttrs (old: {
      src = lib.fileset.toSource {
        inherit root;
        fileset = lib.fileset.unions [
          (root + "/pyproject.toml")
          (root + "/README.md")
          (root + "/python/scalekeeper")
        ];
      };
    });
  };

  pythonSet =
    (pkgs.callPackage pyproject-nix.build.packages { inherit python; }).overrideScope
      (
        lib.composeManyExtensions [
          pyproject-build-systems.overlays.default
          overlay
          nativeLibs
          sourceFilter
        ]
      );

  editablePythonSet = pythonSet.overrideScope (
    lib.composeManyExtensions [
      (workspace.mkEditablePyprojectOverlay { root = "$REPO_ROOT"; })
      (final: prev: {
        scalekeeper = prev.scalekeeper.overrideAttrs (old: {
          # hatchling needs `editables` to build an editable wheel.
          nativeBuildInputs = old.nativeBuildInputs ++ final.resolveBuildSystem { editables = [ ]; };
        });
      })
    ]
  );
in
{
  inherit python pythonSet;
  version = pythonSet.scalekeeper.version;
  runtimeEnv = pythonSet.mkVirtualEnv "scalekeeper-${pythonSet.scalekeeper.version}" workspace.deps.default;
  devEnv = pythonSet.mkVirtualEnv "scalekeeper-dev-env" workspace.deps.all;
  editableEnv = editablePythonSet.mkVirtualEnv "scalekeeper-editable-env" workspace.deps.all;
}
