# The sink's Caddyfile and Grafana provisioning, rendered at build time by `greenflow sink render` from a
# greenflow.yaml written from the module's options: the same renderers as `greenflow sink up`, no secret inside.
{
  pkgs,
  cfg,
  caddyPackage,
  dataDir,
  stateDir,
  grafanaAdminPasswordFile,
  grafanaSecretKeyFile,
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
    caddyAdminPort = cfg.caddy.adminPort;
    grafanaEnable = cfg.grafana.enable;
    grafanaPort = cfg.grafana.port;
    grafanaAdminUser = cfg.grafana.adminUser;
    inherit dataDir stateDir;
  };
  configFile = pkgs.writeText "greenflow.yaml" (builtins.toJSON settings);
  extraCaddyConfig = pkgs.writeText "greenflow-extra.caddy" cfg.caddy.extraConfig;
in
pkgs.runCommand "greenflow-sink-config"
  {
    # Caddy on PATH: greenflow picks the basic-auth directive for the Caddy that will run it, and checks the file.
    nativeBuildInputs = [
      cfg.package
      caddyPackage
    ];
    passthru = { inherit configFile settings; };
  }
  ''
    export HOME="$TMPDIR"
    greenflow --config ${configFile} sink render --out "$out" \
      --grafana-admin-password-file ${grafanaAdminPasswordFile} \
      --grafana-secret-key-file ${grafanaSecretKeyFile}
    cat ${extraCaddyConfig} >> "$out/caddy/Caddyfile"
    GREENFLOW_SINK_PASSWORD_HASH='$2a$14$0123456789012345678901uEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAM' \
      caddy adapt --adapter caddyfile --config "$out/caddy/Caddyfile" > /dev/null
    cp ${configFile} "$out/greenflow.yaml"
  ''
