# `services.greenflow.sink` for home-manager: the same sink as `greenflow sink up`, as systemd user services, no root.
# Data and state live where the CLI looks (XDG data and state directories), with the same ports, so `greenflow sink
# url`, `greenflow run` and `greenflow demo` find it; the same settings go to $XDG_CONFIG_HOME/greenflow/greenflow.yaml,
# where the CLI looks for its configuration. The Caddyfile and Grafana's files come from `greenflow sink render`
# (modules/render.nix). Checked against home-manager release-25.11 (3ee51fbdac): modules/systemd.nix
# (systemd.user.{services,paths}, systemctlPath), modules/misc/xdg.nix, modules/lib/assertions.nix.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkIf;
  cfg = config.services.greenflow.sink;
  gflib = import ../nix/lib.nix;
  dataDir = "${config.xdg.dataHome}/greenflow";
  stateDir = "${config.xdg.stateHome}/greenflow";
  secretsDir = "${dataDir}/secrets";
  passwordFile = if cfg.passwordFile != null then cfg.passwordFile else "${secretsDir}/sink-password";
  adminPasswordFile =
    if cfg.grafana.adminPasswordFile != null then
      cfg.grafana.adminPasswordFile
    else
      "${secretsDir}/grafana-admin-password";
  secretKeyFile =
    if cfg.grafana.secretKeyFile != null then
      cfg.grafana.secretKeyFile
    else
      "${secretsDir}/grafana-secret-key";
  rendered = import ./render.nix {
    inherit
      pkgs
      cfg
      dataDir
      stateDir
      ;
    caddyPackage = cfg.caddyPackage;
    grafanaAdminPasswordFile = adminPasswordFile;
    grafanaSecretKeyFile = secretKeyFile;
  };
  hashEnvFile = "%t/greenflow-sink/caddy.env";

  # Generates the secrets `greenflow sink up` would generate (only those not given as files), then hands Caddy the
  # bcrypt hash of the password through the environment file.
  secretsScript = pkgs.writeShellScript "greenflow-sink-secrets" ''
    set -euo pipefail
    umask 077
    mkdir -p ${lib.escapeShellArg secretsDir} "$RUNTIME_DIRECTORY"
    generate() {
      if [ ! -s "$1" ]; then
        ${pkgs.coreutils}/bin/head -c 32 /dev/urandom | ${pkgs.coreutils}/bin/base64 | ${pkgs.coreutils}/bin/tr -d '/+=\n' > "$1"
      fi
    }
    ${lib.optionalString (cfg.passwordFile == null) "generate ${lib.escapeShellArg passwordFile}"}
    ${lib.optionalString (
      cfg.grafana.enable && cfg.grafana.adminPasswordFile == null
    ) "generate ${lib.escapeShellArg adminPasswordFile}"}
    ${lib.optionalString (
      cfg.grafana.enable && cfg.grafana.secretKeyFile == null
    ) "generate ${lib.escapeShellArg secretKeyFile}"}
    password="$(cat ${lib.escapeShellArg passwordFile})"
    hash="$(printf '%s\n' "$password" | ${lib.getExe cfg.caddyPackage} hash-password)"
    printf "GREENFLOW_SINK_PASSWORD_HASH='%s'\n" "$hash" > "$RUNTIME_DIRECTORY/caddy.env"
  '';

  # `<paths.data_dir>/victoria-metrics`: where the CLI takes VictoriaMetrics' data to be
  # (crates/greenflow-config/src/paths.rs, victoria_metrics_data), so `greenflow sink status` sizes these samples.
  vmArgs = gflib.victoriaMetricsArgs {
    port = cfg.victoriametrics.port;
    dataDir = "${dataDir}/victoria-metrics";
    inherit (cfg) retention;
    extraFlags = cfg.victoriametrics.extraFlags;
  };
in
{
  options.services.greenflow.sink = import ./options.nix { inherit lib pkgs cfg; } // {
    victoriametricsPackage = lib.mkPackageOption pkgs "victoriametrics" { };
    caddyPackage = lib.mkPackageOption pkgs "caddy" { };
    grafanaPackage = lib.mkPackageOption pkgs "grafana" { };
  };

  config = mkIf cfg.enable {
    assertions = [
      (lib.hm.assertions.assertPlatform "services.greenflow.sink" pkgs lib.platforms.linux)
      {
        assertion = gflib.validRetention cfg.retention;
        message = "services.greenflow.sink.retention = \"${cfg.retention}\" is not valid: use a whole number with h, d, w or y, e.g. \"100y\".";
      }
    ];

    home.packages = [ cfg.package ];
    # The settings the units run with (the greenflow.yaml the renderer read): ports, user name, public host and the
    # data and state directories, so `greenflow sink url`, `runs` and `run` find this sink without a project file.
    xdg.configFile."greenflow/greenflow.yaml".source = "${rendered}/greenflow.yaml";

    systemd.user.services = {
      greenflow-sink-secrets = {
        Unit.Description = "greenflow sink: secrets and the password hash for Caddy";
        Service = {
          Type = "oneshot";
          RemainAfterExit = true;
          RuntimeDirectory = "greenflow-sink";
          RuntimeDirectoryMode = "0700";
          ExecStart = "${secretsScript}";
        };
      };

      greenflow-victoriametrics = {
        Unit.Description = "greenflow sink: VictoriaMetrics";
        Service = {
          ExecStart = lib.escapeShellArgs (
            [ (lib.getExe' cfg.victoriametricsPackage "victoria-metrics") ] ++ vmArgs
          );
          Restart = "on-failure";
          RestartSec = 1;
          TimeoutStopSec = 20;
        };
        Install.WantedBy = [ "default.target" ];
      };

      greenflow-caddy = {
        Unit = {
          Description = "greenflow sink: Caddy (basic auth on /vm/, Grafana on /grafana/)";
          Requires = [ "greenflow-sink-secrets.service" ];
          After = [
            "greenflow-sink-secrets.service"
            "greenflow-victoriametrics.service"
          ];
        };
        Service = {
          ExecStart = lib.escapeShellArgs [
            (lib.getExe cfg.caddyPackage)
            "run"
            "--config"
            "${rendered}/caddy/Caddyfile"
            "--adapter"
            "caddyfile"
          ];
          EnvironmentFile = hashEnvFile;
          # Caddy keeps certificates and its autosaved config under XDG directories: keep them in greenflow's.
          Environment = [
            "XDG_DATA_HOME=${stateDir}/sink/caddy/data"
            "XDG_CONFIG_HOME=${stateDir}/sink/caddy/config"
          ];
          Restart = "on-failure";
          RestartSec = 1;
        };
        Install.WantedBy = [ "default.target" ];
      };
    }
    // lib.optionalAttrs (cfg.passwordFile != null) {
      greenflow-sink-password-changed = {
        Unit.Description = "greenflow sink: hash the changed sink password again and restart Caddy";
        Service = {
          Type = "oneshot";
          ExecStart = lib.escapeShellArgs [
            config.systemd.user.systemctlPath
            "--user"
            "try-restart"
            "greenflow-sink-secrets.service"
            "greenflow-caddy.service"
          ];
        };
      };
    }
    // lib.optionalAttrs cfg.grafana.enable {
      greenflow-grafana = {
        Unit = {
          Description = "greenflow sink: Grafana";
          Requires = [ "greenflow-sink-secrets.service" ];
          After = [
            "greenflow-sink-secrets.service"
            "greenflow-victoriametrics.service"
          ];
        };
        Service = {
          ExecStartPre = "${pkgs.coreutils}/bin/mkdir -p ${
            lib.escapeShellArgs [
              "${dataDir}/grafana"
              "${stateDir}/sink/logs"
            ]
          }";
          ExecStart = lib.escapeShellArgs [
            (lib.getExe' cfg.grafanaPackage "grafana")
            "server"
            "--homepath"
            "${cfg.grafanaPackage}/share/grafana"
            "--config"
            "${rendered}/grafana/grafana.ini"
          ];
          Restart = "on-failure";
          RestartSec = 1;
        };
        Install.WantedBy = [ "default.target" ];
      };
    };

    # A password file given as an option and written anew or replaced is hashed again, and Caddy restarted with the
    # new hash (Caddy is ordered after the secrets unit; Grafana, which Requires= it too, restarts with it). A
    # generated password is this module's own and stays.
    systemd.user.paths = lib.optionalAttrs (cfg.passwordFile != null) {
      greenflow-sink-password = {
        Unit.Description = "greenflow sink: watch the sink password file";
        Path = {
          PathChanged = cfg.passwordFile;
          Unit = "greenflow-sink-password-changed.service";
        };
        Install.WantedBy = [ "default.target" ];
      };
    };
  };
}
