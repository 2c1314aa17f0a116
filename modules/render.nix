# The sink's Caddyfile and Grafana provisioning, rendered at build time by `greenflow sink render` from a
# greenflow.yaml written from the module's options: the same renderers as `greenflow sink up`, no secret inside.
# Everything run here runs on the build platform: `cfg.renderPackage` (greenflow for that platform) and a Caddy
# that runs there.
{
  pkgs,
  cfg,
  # The Caddy that will serve the files (the host's): greenflow picks the basic-auth directive for its version.
  caddyPackage,
  dataDir,
  stateDir,
  grafanaAdminPasswordFile,
  grafanaSecretKeyFile,
  # Where Grafana reads its datasource's password (the sink reader's) at run time.
  grafanaDatasourcePasswordFile,
}:
let
  gflib = import ../nix/lib.nix;
  settings = gflib.sinkConfig {
    inherit (cfg)
      username
      retention
      publicHost
      httpPort
      ;
    victoriaMetricsPort = cfg.victoriametrics.port;
    victoriaMetricsExtraFlags = cfg.victoriametrics.extraFlags;
    grafanaEnable = cfg.grafana.enable;
    grafanaPort = cfg.grafana.port;
    grafanaAdminUser = cfg.grafana.adminUser;
    inherit dataDir stateDir;
  };
  # The host's Caddy where the build platform can run it; when cross-compiling, nixpkgs' Caddy for the build platform,
  # the same version as pkgs.caddy (a services.caddy.package with plugins keeps Caddy's version).
  buildCaddy =
    if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then
      caddyPackage
    else
      pkgs.buildPackages.caddy;
  configFile = pkgs.writeText "greenflow.yaml" (builtins.toJSON settings);
  # What the renderer reads: the same settings, naming the Caddy whose version decides the basic-auth directive (on
  # PATH, the wrapped greenflow would find the Caddy it was wrapped with first).
  renderConfigFile = pkgs.writeText "greenflow-render.yaml" (
    builtins.toJSON (
      pkgs.lib.recursiveUpdate settings { sink.caddy.binary = "${buildCaddy}/bin/caddy"; }
    )
  );
  extraCaddyConfig = pkgs.writeText "greenflow-extra.caddy" cfg.caddy.extraConfig;
in
pkgs.runCommand "greenflow-sink-config"
  {
    nativeBuildInputs = [ cfg.renderPackage ];
    passthru = { inherit configFile settings; };
  }
  ''
    export HOME="$TMPDIR"
    greenflow --config ${renderConfigFile} sink render --out "$out" \
      --grafana-admin-password-file ${grafanaAdminPasswordFile} \
      --grafana-secret-key-file ${grafanaSecretKeyFile} \
      --grafana-datasource-password-file ${grafanaDatasourcePasswordFile} \
      ${pkgs.lib.concatMapStringsSep " " (
        address: "--bind ${pkgs.lib.escapeShellArg address}"
      ) cfg.publicBind}
    cat ${extraCaddyConfig} >> "$out/caddy/Caddyfile"
    # The same Caddy checks the whole file, the extra configuration included, with example hashes for the owner's,
    # the writer's and the reader's placeholders (the services compute the real ones at start).
    ${gflib.passwordHashVars.owner}='$2a$14$0123456789012345678901uEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAM' \
    ${gflib.passwordHashVars.writer}='$2a$14$9876543210987654321098uEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAM' \
    ${gflib.passwordHashVars.reader}='$2a$14$5432109876543210987654uEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAM' \
      ${buildCaddy}/bin/caddy adapt --adapter caddyfile --config "$out/caddy/Caddyfile" > /dev/null
    cp ${configFile} "$out/greenflow.yaml"
  ''
