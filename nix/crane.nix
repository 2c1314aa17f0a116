# The workspace built with crane: one dependency build shared by the package and every check.
{
  lib,
  stdenv,
  craneLib,
  makeWrapper,
  installShellFiles,
  runCommand,
  # What `greenflow sink up`, `demo` and `cluster install` run; on PATH of the wrapped binary.
  runtimeInputs,
  # What the tests start or call (VictoriaMetrics, Caddy, Prometheus, node-exporter, helm, python3 for the Grafana
  # stand-in); on PATH of the nextest check.
  testInputs,
}:
let
  root = ../.;
  # crane's Cargo sources plus what the build and the tests read besides: askama's templates (askama.toml points at
  # ../../templates; init.rs and grafana.rs include_str! from there) and insta's snapshots.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (craneLib.fileset.commonCargoSources root)
      ../templates
      (lib.fileset.fileFilter (file: file.hasExt "snap") ../crates)
    ];
  };

  # The workspace's Cargo.toml has no [package]: name every derivation, so that crane (lib/crateNameFromCargoToml.nix)
  # has nothing to guess and warns about nothing.
  commonArgs = {
    inherit src;
    strictDeps = true;
    pname = "greenflow";
    inherit ((lib.importTOML ../Cargo.toml).workspace.package) version;
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # The completions and man pages come from the binary itself (`greenflow completions SHELL`, `greenflow man --out
  # DIR`), so only where the build platform can run what it built.
  canRunBuilt = stdenv.buildPlatform.canExecute stdenv.hostPlatform;
  installDocs = lib.optionalString canRunBuilt ''
    installShellCompletion --cmd greenflow \
      --bash <($out/bin/greenflow completions bash) \
      --fish <($out/bin/greenflow completions fish) \
      --zsh <($out/bin/greenflow completions zsh)
    $out/bin/greenflow man --out "$TMPDIR/man"
    installManPage "$TMPDIR"/man/*.1
  '';

  greenflow = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      # The tests run once, in the nextest check.
      doCheck = false;
      cargoExtraArgs = "--locked -p greenflow";
      nativeBuildInputs = [
        makeWrapper
        installShellFiles
      ];
      # The completions and man pages first, from the binary itself: wrapProgram then moves it to .greenflow-wrapped.
      postInstall = installDocs + ''
        wrapProgram $out/bin/greenflow --prefix PATH : ${lib.makeBinPath runtimeInputs}
      '';
      meta = {
        description = "Keep the metrics of experiments that run on short-lived Kubernetes clusters";
        license = with lib.licenses; [
          mit
          asl20
        ];
        mainProgram = "greenflow";
      };
    }
  );
in
{
  inherit
    src
    commonArgs
    cargoArtifacts
    greenflow
    ;

  checks = {
    inherit greenflow;

    clippy = craneLib.cargoClippy (
      commonArgs
      // {
        inherit cargoArtifacts;
        cargoClippyExtraArgs = "--all-targets -- --deny warnings";
      }
    );

    doc = craneLib.cargoDoc (
      commonArgs
      // {
        inherit cargoArtifacts;
        cargoDocExtraArgs = "--workspace --no-deps";
        env.RUSTDOCFLAGS = "--deny warnings";
      }
    );

    fmt = craneLib.cargoFmt { inherit (commonArgs) src pname version; };

    # Licences, bans and sources; advisories need the network (the CI workflow runs `cargo deny check advisories`).
    deny = craneLib.cargoDeny { inherit (commonArgs) src pname version; };

    nextest = craneLib.cargoNextest (
      commonArgs
      // {
        inherit cargoArtifacts;
        # On PATH while the tests run (crane's cargoNextest sets doCheck, so stdenv adds nativeCheckInputs): the tests
        # find the programs there, as they would with GREENFLOW_TEST_PROGRAMS (scripts/test), which is left unset.
        nativeCheckInputs = testInputs;
        # The chart-values tests (greenflow-cluster, binary `values`) read ../shared/reference, which lies outside
        # the repository and so outside the sandbox; so do the store-path tests of greenflow-data, which add to a
        # Nix store (none is writable in a build); and the real-helm tests (greenflow, binary `helm`), which need Helm 3
        # and Helm 4 side by side where nixpkgs has one `kubernetes-helm` (the Debian CI installs both); and the report
        # tests (greenflow, binary `report`), which open the page in Chromium through chromedriver, not given to the
        # sandbox (the Debian CI installs both). Everything else runs here, the end-to-end tests included, on the
        # sandbox's loopback.
        cargoNextestExtraArgs = "--workspace --no-fail-fast -E 'not (package(greenflow-cluster) & binary(values)) & not (package(greenflow-data) & test(/store_path/)) & not (package(greenflow) & binary(helm)) & not (package(greenflow) & binary(report))'";
        preCheck = ''
          export HOME="$TMPDIR"
        '';
      }
    );
  }
  // lib.optionalAttrs canRunBuilt {
    # The package carries its completions for bash, zsh and fish and a man page per command.
    docs = runCommand "greenflow-docs" { } ''
      test -s ${greenflow}/share/bash-completion/completions/greenflow.bash
      test -s ${greenflow}/share/zsh/site-functions/_greenflow
      test -s ${greenflow}/share/fish/vendor_completions.d/greenflow.fish
      ls ${greenflow}/share/man/man1/greenflow.1* ${greenflow}/share/man/man1/greenflow-sink-up.1* > /dev/null
      touch $out
    '';
  };
}
