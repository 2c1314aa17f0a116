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
      # Packages, apps, the shell and the formatter only: the NixOS VM test and the home-manager check are Linux's.
      darwin = [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The programs nixpkgs builds for this platform: Grafana, for one, is not built for every darwin
      # (pkgs/by-name/gr/grafana/package.nix, meta.platforms). greenflow runs the sink without Grafana and names any
      # other program it misses.
      available = pkgs: builtins.filter (lib.meta.availableOn pkgs.stdenv.hostPlatform);

      # The crane build for one package set.
      build =
        pkgs:
        import ./nix/crane.nix {
          inherit (pkgs)
            lib
            stdenv
            makeWrapper
            installShellFiles
            runCommand
            ;
          craneLib = crane.mkLib pkgs;
          runtimeInputs = available pkgs (
            with pkgs;
            [
              victoriametrics
              caddy
              grafana
              prometheus
              prometheus-node-exporter
              kubernetes-helm
            ]
          );
          testInputs = with pkgs; [
            victoriametrics
            caddy
            prometheus
            prometheus-node-exporter
            kubernetes-helm
            python3
            nix
          ];
        };

      # The modules default their package to this flake's, built against the user's nixpkgs. The Caddyfile and
      # Grafana's files are rendered when the system is built, by a greenflow that runs there: the package itself
      # when the build platform can run it, else the same greenflow built from pkgs.buildPackages (cross builds).
      withPackage =
        module:
        {
          config,
          lib,
          pkgs,
          ...
        }:
        {
          imports = [ module ];
          services.greenflow.sink = {
            package = lib.mkDefault (build pkgs).greenflow;
            renderPackage = lib.mkDefault (
              if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then
                config.services.greenflow.sink.package
              else
                (build pkgs.buildPackages).greenflow
            );
          };
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
            # The build inputs of the crane checks (cargo-nextest, cargo-deny, ...), on every system; not the NixOS
            # VM test's.
            checks = (build pkgs).checks;
            packages = available pkgs (
              with pkgs;
              [
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
              ]
            );
          };
        }
      );

      # `nix fmt` formats the whole tree (treefmt with nixfmt; pkgs/by-name/ni/nixfmt-tree), not one file.
      formatter = forSystems (linux ++ darwin) (pkgs: pkgs.nixfmt-tree);

      overlays.default = final: _prev: { greenflow = (build final).greenflow; };

      nixosModules.default = withPackage ./modules/nixos.nix;
      # home-manager's own name for this output; Nix knows no home-manager output, so `nix flake check` lists it as
      # unknown.
      homeModules.default = withPackage ./modules/home-manager.nix;

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
