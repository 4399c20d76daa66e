# scalekeeper, built from uv.lock with uv2nix: the Nix build and `uv sync`
# resolve to the same wheels, so what CI tests is what the image ships.
# Layout: nix/python.nix (package sets and virtualenvs), nix/image.nix (OCI
# images), nix/checks.nix (flake checks), nix/devshell.nix. Pins: flake.lock,
# provenance in nix/README.md.
{
  description = "scalekeeper: gRPC service and controller for the replica count of Kubernetes Deployments";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      pyproject-nix,
      uv2nix,
      pyproject-build-systems,
    }:
    let
      inherit (nixpkgs) lib;

      # aarch64-darwin gets the dev shell, the app and the checks natively; its
      # `image` is the aarch64-linux one, which needs a Linux builder (e.g.
      # nix-darwin's linux-builder or a remote builder): see nix/README.md.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];

      workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = ./.; };

      pythonFor =
        system:
        import ./nix/python.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          inherit
            lib
            workspace
            pyproject-nix
            pyproject-build-systems
            ;
          root = ./.;
        };

      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system} (pythonFor system));

      linuxSystemOf = system: builtins.replaceStrings [ "darwin" ] [ "linux" ] system;
    in
    {
      packages = forAllSystems (
        pkgs: py:
        let
          system = pkgs.stdenv.hostPlatform.system;
          images =
            if pkgs.stdenv.isLinux then
              import ./nix/image.nix {
                inherit pkgs lib;
                inherit (py) runtimeEnv version;
                root = ./.;
              }
            else
              {
                inherit (self.packages.${linuxSystemOf system}) image image-dev;
              };
        in
        {
          # The runtime virtualenv: bin/scalekeeper (the server) and bin/python.
          default = py.runtimeEnv;
          scalekeeper = py.runtimeEnv;
          inherit (images) image image-dev;
        }
      );

      apps = forAllSystems (
        pkgs: py: {
          default = {
            type = "app";
            program = "${py.runtimeEnv}/bin/scalekeeper";
          };
        }
      );

      checks = forAllSystems (
        pkgs: py:
        import ./nix/checks.nix {
          inherit pkgs lib;
          inherit (py) devEnv;
          root = ./.;
        }
      );

      devShells = forAllSystems (
        pkgs: py: {
          default = import ./nix/devshell.nix { inherit pkgs py; };
        }
      );

      formatter = forAllSystems (pkgs: _py: pkgs.nixfmt-rfc-style);
    };
}
