{
  description = "greenflow: keep the metrics of experiments that run on short-lived Kubernetes clusters";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    crane.url = "github:ipetkov/crane";
    # Only for the home-manager module's evaluation check.
    home-manager = {
      url = "github:nix-community/home-manager/release-25.11";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      home-manager,
    }:
    let
      inherit (nixpkgs) lib;
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      darwin = [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The crane build for one package set.
      build =
        pkgs:
        import ./nix/crane.nix {
          inherit (pkgs) lib makeWrapper;
          craneLib = crane.mkLib pkgs;
          runtimeInputs = with pkgs; [
            victoriametrics
            caddy
            grafana
            prometheus
            prometheus-node-exporter
            kubernetes-helm
          ];
          testInputs = with pkgs; [
            victoriametrics
            caddy
            prometheus
            prometheus-node-exporter
            python3
          ];
        };

      # The modules default their package to this flake's, built against the user's nixpkgs.
      withPackage =
        module:
        { lib, pkgs, ... }:
        {
          imports = [ module ];
          services.greenflow.sink.package = lib.mkDefault (build pkgs).greenflow;
        };
    in
    {
      packages = forSystems (linux ++ darwin) (
        pkgs:
        let
          greenflow = (build pkgs).greenflow;
        in
        {
          inherit greenflow;
          default = greenflow;
        }
      );

      apps = forSystems (linux ++ darwin) (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.greenflow;
          meta.description = "the greenflow CLI, with the sink's programs on PATH";
        };
      });

      devShells = forSystems (linux ++ darwin) (
        pkgs:
        let
          craneLib = crane.mkLib pkgs;
        in
        {
          default = craneLib.devShell {
            # Inherit the checks' inputs (the test programs among them) where the checks exist.
            checks = self.checks.${pkgs.stdenv.hostPlatform.system} or { };
            packages = with pkgs; [
              rust-analyzer
              cargo-nextest
              cargo-deny
              kubernetes-helm
              kubectl
              victoriametrics
              caddy
              grafana
              prometheus
              prometheus-node-exporter
              nixfmt
              deadnix
            ];
          };
        }
      );

      formatter = forSystems (linux ++ darwin) (pkgs: pkgs.nixfmt);

      overlays.default = final: _prev: { greenflow = (build final).greenflow; };

      nixosModules.default = withPackage ./modules/nixos.nix;
      homeModules.default = withPackage ./modules/home-manager.nix;
      homeManagerModules.default = self.homeModules.default;

      checks = forSystems linux (
        pkgs:
        (build pkgs).checks
        // {
          nixos-sink = import ./tests/nixos/sink.nix {
            inherit pkgs;
            sinkModule = self.nixosModules.default;
            greenflow = self.packages.${pkgs.stdenv.hostPlatform.system}.greenflow;
          };
          home-manager-eval = import ./tests/nix/home-manager.nix {
            inherit pkgs home-manager;
            homeModule = self.homeModules.default;
          };
        }
      );
    };
}
