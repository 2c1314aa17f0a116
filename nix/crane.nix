# The workspace built with crane: one dependency build shared by the package and every check.
{
  lib,
  craneLib,
  makeWrapper,
  # What `greenflow sink up`, `demo` and `cluster install` run; on PATH of the wrapped binary.
  runtimeInputs,
  # What the end-to-end tests start (VictoriaMetrics, Caddy, Prometheus, node-exporter).
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

  commonArgs = {
    inherit src;
    strictDeps = true;
    pname = "greenflow";
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  greenflow = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      # The tests run once, in the nextest check.
      doCheck = false;
      cargoExtraArgs = "--locked -p greenflow";
      nativeBuildInputs = [ makeWrapper ];
      postInstall = ''
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

    fmt = craneLib.cargoFmt { inherit src; };

    # Licences, bans and sources; advisories need the network (the CI workflow runs `cargo deny check advisories`).
    deny = craneLib.cargoDeny {
      inherit src;
      pname = "greenflow";
    };

    nextest = craneLib.cargoNextest (
      commonArgs
      // {
        inherit cargoArtifacts;
        nativeCheckInputs = testInputs;
        # The chart-values tests (greenflow-cluster, binary `values`) read ../shared/reference, which lies outside
        # the repository and so outside the sandbox; they run in scripts/test. Everything else runs here, the
        # end-to-end tests included, on the sandbox's loopback.
        cargoNextestExtraArgs = "--workspace --no-fail-fast -E 'not (package(greenflow-cluster) & binary(values))'";
        preCheck = ''
          export HOME="$TMPDIR"
        '';
      }
    );
  };
}
