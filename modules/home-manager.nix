# `services.greenflow.sink` for home-manager: the same sink as `greenflow sink up`, as systemd user services, no root.
# Data and state live where the CLI looks (XDG data and state directories), with the same ports, so `greenflow sink
# url`, `greenflow run` and `greenflow demo` find it; the same settings go to $XDG_CONFIG_HOME/greenflow/greenflow.yaml,
# where the CLI looks for its configuration. The Caddyfile and Grafana's files come from `greenflow sink render`
# (modules/render.nix); the secrets' shell is modules/secrets.nix, shared with the NixOS module. Checked against
# home-manager release-25.11 (3ee51fbdac): modules/systemd.nix (systemd.user.{services,paths}, systemctlPath; its
# unit files were rendered with lib.evalModules and stubs of the rest: a list value, such as PathChanged, becomes one
# line per element), modules/misc/xdg.nix, modules/lib/assertions.nix, and `warnings`.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkIf optional;
  cfg = config.services.greenflow.sink;
  gflib = import ../nix/lib.nix;
  secrets = import ./secrets.nix { inherit pkgs; };
  esc = lib.escapeShellArg;
  dataDir = "${config.xdg.dataHome}/greenflow";
  stateDir = "${config.xdg.stateHome}/greenflow";
  secretsDir = "${dataDir}/secrets";
  passwordFile = if cfg.passwordFile != null then cfg.passwordFile else "${secretsDir}/sink-password";
  # Where the CLI reads the writer's password (`greenflow cluster install`, `greenflow run`): generated there, or a
  # copy of `writerPasswordFile`.
  writerPasswordCopy = "${secretsDir}/sink-writer-password";
  # The reader's password (Grafana's datasource credential, the query API only): generated, read by Grafana.
  readerPasswordFile = "${secretsDir}/sink-reader-password";
  # The password files given as options: a changed one is hashed again.
  watchedPasswordFiles =
    optional (cfg.passwordFile != null) cfg.passwordFile
    ++ optional (cfg.writerPasswordFile != null) cfg.writerPasswordFile;
  # Caddy's admin socket, `<paths.state_dir>/sink/caddy-admin/admin.sock`, in a directory only this user may enter.
  caddyAdminDir = gflib.caddyAdminSocketDir stateDir;
  publicSite = gflib.publicSite cfg.publicHost;
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
    grafanaDatasourcePasswordFile = readerPasswordFile;
  };
  hashEnvFile = "%t/greenflow-sink/caddy.env";
  vmEnvFile = "%t/greenflow-sink-victoriametrics/victoriametrics.env";

  # Generates the secrets `greenflow sink up` would generate (only those not given as files; the writer's password is
  # copied where the CLI reads it when given), then hands Caddy the bcrypt hashes of the owner's and the writer's
  # passwords through the environment file.
  secretsScript = pkgs.writeShellScript "greenflow-sink-secrets" (
    secrets.preamble
    + ''
      ${pkgs.coreutils}/bin/mkdir -p ${esc secretsDir} "$RUNTIME_DIRECTORY"
      ${lib.optionalString (cfg.passwordFile == null) "generate ${esc passwordFile}"}
      ${lib.optionalString (
        cfg.grafana.enable && cfg.grafana.adminPasswordFile == null
      ) "generate ${esc adminPasswordFile}"}
      ${lib.optionalString (
        cfg.grafana.enable && cfg.grafana.secretKeyFile == null
      ) "generate ${esc secretKeyFile}"}
    ''
    + secrets.caddyEnv {
      caddy = lib.getExe cfg.caddyPackage;
      ownerPasswordFile = esc passwordFile;
      writerPasswordFile = if cfg.writerPasswordFile != null then esc cfg.writerPasswordFile else null;
      writerCopy = esc writerPasswordCopy;
      readerCopy = esc readerPasswordFile;
      envFile = ''"$RUNTIME_DIRECTORY"/caddy.env'';
    }
  );

  # VictoriaMetrics' admin key (`<paths.data_dir>/secrets/victoria-metrics-admin-key`, generated on first start, as
  # `greenflow sink up` does) into the environment file VictoriaMetrics reads its GREENFLOW_VM_* flags from.
  victoriaMetricsKeyScript = pkgs.writeShellScript "greenflow-sink-victoriametrics-key" (
    secrets.preamble
    + ''
      ${pkgs.coreutils}/bin/mkdir -p ${esc secretsDir} "$RUNTIME_DIRECTORY"
    ''
    + secrets.victoriaMetricsEnv {
      keyFile = esc "${secretsDir}/victoria-metrics-admin-key";
      version = lib.getVersion cfg.victoriametricsPackage;
      envFile = ''"$RUNTIME_DIRECTORY"/victoriametrics.env'';
    }
  );

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
        assertion = cfg.writerPasswordFile == null || cfg.writerPasswordFile != cfg.passwordFile;
        message = "services.greenflow.sink.writerPasswordFile must not be passwordFile: the writer (the cluster's credential, remote write only) needs a password of its own; leave it unset to have one generated.";
      }
      {
        assertion = gflib.validRetention cfg.retention;
        message = "services.greenflow.sink.retention = \"${cfg.retention}\" is not valid: use a whole number with h, d, w or y, e.g. \"100y\".";
      }
    ];

    warnings =
      optional (cfg.caddy.adminPort != null)
        "services.greenflow.sink.caddy.adminPort is ignored and will be removed: Caddy's admin API is a unix socket in ${caddyAdminDir}, which only this user may enter."
      ++
        optional (publicSite != null && publicSite.tailnet && cfg.publicBind == [ ])
          "services.greenflow.sink.publicHost is a tailnet name but publicBind is empty: Caddy's public site listens on every interface, and home-manager has no firewall to keep it to the tailnet; set publicBind to this machine's tailnet addresses (`tailscale ip`).";

    home.packages = [ cfg.package ];
    # The settings the units run with (the greenflow.yaml the renderer read): ports, user name, public host and the
    # data and state directories, so `greenflow sink url`, `runs` and `run` find this sink without a project file.
    xdg.configFile."greenflow/greenflow.yaml".source = "${rendered}/greenflow.yaml";

    systemd.user.services = {
      greenflow-sink-secrets = {
        Unit.Description = "greenflow sink: secrets and the password hashes for Caddy";
        Service = {
          Type = "oneshot";
          RemainAfterExit = true;
          RuntimeDirectory = "greenflow-sink";
          RuntimeDirectoryMode = "0700";
          ExecStart = "${secretsScript}";
        };
      };

      # A oneshot of its own, so that a changed password (which restarts the secrets oneshot and Caddy) leaves
      # VictoriaMetrics running.
      greenflow-sink-victoriametrics-key = {
        Unit.Description = "greenflow sink: VictoriaMetrics' admin key, for its environment";
        Service = {
          Type = "oneshot";
          RemainAfterExit = true;
          RuntimeDirectory = "greenflow-sink-victoriametrics";
          RuntimeDirectoryMode = "0700";
          ExecStart = "${victoriaMetricsKeyScript}";
        };
      };

      greenflow-victoriametrics = {
        Unit = {
          Description = "greenflow sink: VictoriaMetrics";
          Requires = [ "greenflow-sink-victoriametrics-key.service" ];
          After = [ "greenflow-sink-victoriametrics-key.service" ];
        };
        Service = {
          # -envflag.enable: the admin keys (GREENFLOW_VM_*) come from this file, never the command line.
          ExecStart = lib.escapeShellArgs (
            [ (lib.getExe' cfg.victoriametricsPackage "victoria-metrics") ] ++ vmArgs
          );
          EnvironmentFile = vmEnvFile;
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
          # The admin API's unix socket (the rendered Caddyfile's `admin unix/.../admin.sock`) in a directory only
          # this user may enter; Caddy replaces a socket a killed Caddy left behind.
          ExecStartPre = "${pkgs.coreutils}/bin/install -d -m 0700 ${esc caddyAdminDir}";
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
    // lib.optionalAttrs (watchedPasswordFiles != [ ]) {
      greenflow-sink-password-changed = {
        Unit.Description = "greenflow sink: hash the changed sink passwords again and restart Caddy";
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

    # A password file given as an option (the owner's, the writer's) and written anew or replaced is hashed again,
    # and Caddy restarted with the new hash (Caddy is ordered after the secrets unit; Grafana, which Requires= it too,
    # restarts with it). A generated password is this module's own and stays.
    systemd.user.paths = lib.optionalAttrs (watchedPasswordFiles != [ ]) {
      greenflow-sink-password = {
        Unit.Description = "greenflow sink: watch the sink's password files";
        Path = {
          PathChanged = watchedPasswordFiles;
          Unit = "greenflow-sink-password-changed.service";
        };
        Install.WantedBy = [ "default.target" ];
      };
    };
  };
}
