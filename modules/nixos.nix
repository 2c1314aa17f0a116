# `services.greenflow.sink`: the greenflow sink as system services, mapped onto nixpkgs' own modules
# (services.victoriametrics, services.caddy, services.grafana, services.tailscale). The Caddyfile and Grafana's
# provisioning are rendered by `greenflow sink render` (modules/render.nix), the same code as `greenflow sink up`.
# The nixpkgs options set here were read in nixpkgs 4aa6836a648ca76c68866decf0c8965e36ec2a3b (a fork of master after
# 25.11): services.grafana's settings.server/security, provision.{datasources,dashboards}.path;
# services.caddy.{configFile,environmentFile,package,user} and the caddy unit it makes (User=, ExecReload=`caddy
# reload --config /etc/caddy/caddy_config`, which finds the admin API's address in the configuration, so it reaches
# the unix socket); services.victoriametrics.{listenAddress,retentionPeriod,extraOptions,stateDir,package} and its unit
# (DynamicUser, no EnvironmentFile of its own); services.tailscale.{authKeyFile,permitCertUid,interfaceName};
# networking.firewall.interfaces. This module was evaluated with lib.evalModules beside stubs of those options.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkIf
    mkOption
    mkDefault
    types
    optional
    ;
  cfg = config.services.greenflow.sink;
  gflib = import ../nix/lib.nix;
  secrets = import ./secrets.nix { inherit pkgs; };
  # greenflow.yaml's `paths.data_dir`. The CLI takes VictoriaMetrics' data to be `<data_dir>/victoria-metrics`
  # (crates/greenflow-config/src/paths.rs), and services.victoriametrics keeps it in /var/lib/<stateDir>
  # (nixos/modules/services/databases/victoriametrics.nix: -storageDataPath and StateDirectory): stateDir
  # "greenflow/victoria-metrics" makes the two one directory.
  dataDir = "/var/lib/greenflow";
  vmStateDir = "greenflow/victoria-metrics";
  # `<paths.data_dir>/secrets` (root's, 0700): the writer's password and VictoriaMetrics' admin key, where the CLI
  # reads them (crates/greenflow-sink/src/layout.rs). The oneshots below own it as their StateDirectory.
  secretsStateDir = "greenflow/secrets";
  secretsDir = "/var/lib/${secretsStateDir}";
  # greenflow.yaml's `paths.state_dir`, the secrets oneshot's RuntimeDirectory. Caddy's admin socket lives in
  # `<state_dir>/sink/caddy-admin`, Caddy's own RuntimeDirectory below it: Caddy's user must be able to pass through
  # (0755; the environment file in it is root's, 0600).
  runtimeDir = "/run/greenflow-sink";
  caddyAdminDir = gflib.caddyAdminSocketDir runtimeDir;
  # VictoriaMetrics' environment file (its admin keys) has a directory of its own, root's, 0700.
  vmKeyRuntimeDir = "greenflow-sink-victoriametrics";
  vmEnvFile = "/run/${vmKeyRuntimeDir}/victoriametrics.env";
  # The password files the path unit watches.
  watchedPasswordFiles = [
    (toString cfg.passwordFile)
  ]
  ++ optional (cfg.writerPasswordFile != null) (toString cfg.writerPasswordFile);
  # Grafana reads its secrets from systemd credentials: the files may stay readable by root only.
  grafanaCredentials = "/run/credentials/grafana.service";
  rendered = import ./render.nix {
    inherit pkgs cfg;
    caddyPackage = config.services.caddy.package;
    inherit dataDir;
    stateDir = runtimeDir;
    grafanaAdminPasswordFile = "${grafanaCredentials}/admin-password";
    grafanaSecretKeyFile = "${grafanaCredentials}/secret-key";
    grafanaDatasourcePasswordFile = "${grafanaCredentials}/datasource-password";
  };
  baseUrl = gflib.baseUrl { inherit (cfg) publicHost httpPort; };
  publicSite = gflib.publicSite cfg.publicHost;
  # services.tailscale.interfaceName (nixos/modules/services/networking/tailscale.nix); "userspace-networking" means
  # no interface at all: tailscaled then reaches Caddy itself.
  tailnetInterface = config.services.tailscale.interfaceName;
in
{
  options.services.greenflow.sink = import ./options.nix { inherit lib pkgs cfg; } // {
    tailscale = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Whether to run Tailscale with this sink: `services.tailscale` with `permitCertUid` set to Caddy's user,
          so that Caddy obtains the `*.ts.net` certificate of `publicHost`.
        '';
      };
      authKeyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/tailscale-auth-key";
        description = "File holding a Tailscale auth key (`services.tailscale.authKeyFile`); only a path.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.passwordFile != null;
        message = "services.greenflow.sink.passwordFile must be set: a file holding the sink password (kept out of the Nix store).";
      }
      {
        assertion =
          cfg.grafana.enable -> cfg.grafana.adminPasswordFile != null && cfg.grafana.secretKeyFile != null;
        message = "services.greenflow.sink.grafana.adminPasswordFile and .secretKeyFile must be set (files), or set services.greenflow.sink.grafana.enable = false.";
      }
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
        "services.greenflow.sink.caddy.adminPort is ignored and will be removed: Caddy's admin API is a unix socket in ${caddyAdminDir}, which only Caddy's user may enter.";

    environment.systemPackages = [ cfg.package ];
    # `greenflow` on this machine reads the same settings (ports, user name, public host) as the services.
    environment.etc."greenflow/greenflow.yaml".source = "${rendered}/greenflow.yaml";

    services.victoriametrics = {
      enable = true;
      # systemd creates the nested StateDirectory with its parents (/var/lib/greenflow stays root's, 0755); with the
      # module's DynamicUser the data itself lives in /var/lib/private/greenflow/victoria-metrics behind a symlink.
      stateDir = vmStateDir;
      listenAddress = "127.0.0.1:${toString cfg.victoriametrics.port}";
      retentionPeriod = cfg.retention;
      # The admin keys come from the environment (GREENFLOW_VM_*, the EnvironmentFile below), as under `greenflow
      # sink up`: the command line, which every local user can read, holds none.
      extraOptions =
        gflib.victoriaMetricsEnvFlags
        ++ [ "-search.latencyOffset=2000ms" ]
        ++ cfg.victoriametrics.extraFlags;
    };

    # VictoriaMetrics' admin endpoints on its own port (delete, snapshots, merges, cache resets, profiling, flags,
    # reloads) want the key in <data_dir>/secrets/victoria-metrics-admin-key, generated here on first start. systemd
    # reads the environment file as root before VictoriaMetrics' DynamicUser runs. A oneshot of its own, so that a
    # changed sink password (which restarts the secrets oneshot and Caddy) leaves VictoriaMetrics running.
    systemd.services.greenflow-sink-victoriametrics-key = {
      description = "greenflow sink: VictoriaMetrics' admin key, for its environment";
      before = [ "victoriametrics.service" ];
      requiredBy = [ "victoriametrics.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        StateDirectory = secretsStateDir;
        StateDirectoryMode = "0700";
        RuntimeDirectory = vmKeyRuntimeDir;
        RuntimeDirectoryMode = "0700";
        RuntimeDirectoryPreserve = true;
        UMask = "0077";
      };
      script =
        secrets.preamble
        + secrets.victoriaMetricsEnv {
          keyFile = lib.escapeShellArg "${secretsDir}/victoria-metrics-admin-key";
          version = lib.getVersion config.services.victoriametrics.package;
          envFile = lib.escapeShellArg vmEnvFile;
        };
    };

    systemd.services.victoriametrics = {
      requires = [ "greenflow-sink-victoriametrics-key.service" ];
      after = [ "greenflow-sink-victoriametrics-key.service" ];
      serviceConfig.EnvironmentFile = vmEnvFile;
    };

    # Caddy computes nothing itself: a oneshot turns the password files into the bcrypt hashes the rendered
    # Caddyfile reads from the environment ({$GREENFLOW_SINK_PASSWORD_HASH}, the owner's, and
    # {$GREENFLOW_SINK_WRITER_PASSWORD_HASH}, the writer's), generating the writer's password on first start when no
    # file is given. Caddy Requires= it, so restarting the oneshot restarts Caddy too (systemd.unit(5), Requires=).
    systemd.services.greenflow-sink-secrets = {
      description = "greenflow sink: the writer's password and the bcrypt hashes of both passwords, for Caddy";
      before = [ "caddy.service" ];
      requiredBy = [ "caddy.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        StateDirectory = secretsStateDir;
        StateDirectoryMode = "0700";
        RuntimeDirectory = "greenflow-sink";
        RuntimeDirectoryMode = "0755";
        # Caddy's admin socket directory lives inside and must outlive a restart of this oneshot.
        RuntimeDirectoryPreserve = true;
        UMask = "0077";
        LoadCredential = [
          "password:${toString cfg.passwordFile}"
        ]
        ++ optional (cfg.writerPasswordFile != null) "writer-password:${toString cfg.writerPasswordFile}";
      };
      script =
        secrets.preamble
        + secrets.caddyEnv {
          caddy = lib.getExe config.services.caddy.package;
          ownerPasswordFile = ''"$CREDENTIALS_DIRECTORY"/password'';
          writerPasswordFile =
            if cfg.writerPasswordFile != null then ''"$CREDENTIALS_DIRECTORY"/writer-password'' else null;
          writerCopy = lib.escapeShellArg "${secretsDir}/sink-writer-password";
          readerCopy = lib.escapeShellArg "${secretsDir}/sink-reader-password";
          envFile = lib.escapeShellArg "${runtimeDir}/caddy.env";
        };
    };

    # A password file written anew or replaced (by hand, sops-nix, agenix) is hashed again and Caddy restarted with
    # the new hash: the path unit starts a oneshot that try-restarts both (Caddy is ordered after the hashes). A
    # generated writer password is this module's own and is not watched.
    systemd.paths.greenflow-sink-password = {
      description = "greenflow sink: watch the sink's password files";
      wantedBy = [ "multi-user.target" ];
      pathConfig = {
        PathChanged = watchedPasswordFiles;
        Unit = "greenflow-sink-password-changed.service";
      };
    };
    systemd.services.greenflow-sink-password-changed = {
      description = "greenflow sink: hash the changed sink passwords again and restart Caddy";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = lib.escapeShellArgs [
          "${config.systemd.package}/bin/systemctl"
          "try-restart"
          "greenflow-sink-secrets.service"
          "caddy.service"
        ];
      };
    };

    services.caddy = {
      enable = true;
      configFile = "${rendered}/caddy/Caddyfile";
      environmentFile = "${runtimeDir}/caddy.env";
    };

    systemd.services.caddy = {
      requires = [ "greenflow-sink-secrets.service" ];
      after = [
        "greenflow-sink-secrets.service"
        "victoriametrics.service"
      ]
      ++ optional cfg.tailscale.enable (
        if cfg.tailscale.authKeyFile != null then "tailscaled-autoconnect.service" else "tailscaled.service"
      );
      wants = optional cfg.tailscale.enable "tailscaled.service";
      # The admin API's unix socket (the rendered Caddyfile's `admin unix/.../admin.sock`): a directory only Caddy's
      # user may enter, made by systemd at each start (owned by User=, parents root's 0755) and removed at stop.
      # `caddy reload` (the module's ExecReload, as Caddy's user) reads the same address from the configuration.
      serviceConfig = {
        RuntimeDirectory = lib.removePrefix "/run/" caddyAdminDir;
        RuntimeDirectoryMode = "0700";
      };
    };

    services.grafana = mkIf cfg.grafana.enable {
      enable = true;
      settings = {
        server = {
          protocol = "http";
          http_addr = "127.0.0.1";
          http_port = cfg.grafana.port;
          domain = mkDefault (gflib.urlHost baseUrl);
          root_url = "${baseUrl}/grafana/";
          serve_from_sub_path = true;
        };
        security = {
          admin_user = cfg.grafana.adminUser;
          admin_password = "$__file{${grafanaCredentials}/admin-password}";
          secret_key = "$__file{${grafanaCredentials}/secret-key}";
        };
        users.allow_sign_up = false;
        analytics = {
          reporting_enabled = false;
          check_for_updates = false;
        };
      };
      provision = {
        enable = true;
        datasources.path = "${rendered}/grafana/provisioning/datasources";
        dashboards.path = "${rendered}/grafana/provisioning/dashboards";
      };
    };

    # Grafana queries through Caddy as the sink's reader (the query API only); the secrets oneshot generates that
    # password, which systemd hands Grafana as a credential.
    systemd.services.grafana = mkIf cfg.grafana.enable {
      requires = [ "greenflow-sink-secrets.service" ];
      after = [
        "victoriametrics.service"
        "greenflow-sink-secrets.service"
      ];
      serviceConfig.LoadCredential = [
        "admin-password:${toString cfg.grafana.adminPasswordFile}"
        "secret-key:${toString cfg.grafana.secretKeyFile}"
        "datasource-password:${secretsDir}/sink-reader-password"
      ];
    };

    # A tailnet name: Caddy's public site must be reachable from the tailnet, and only from there. The NixOS firewall
    # is on by default; open the site's port on the tailnet interface alone (never on every interface). Other
    # public addresses are the machine owner's to open.
    networking.firewall.interfaces = mkIf (
      publicSite != null && publicSite.tailnet && tailnetInterface != "userspace-networking"
    ) { ${tailnetInterface}.allowedTCPPorts = [ publicSite.port ]; };

    services.tailscale = mkIf cfg.tailscale.enable {
      enable = true;
      authKeyFile = cfg.tailscale.authKeyFile;
      permitCertUid = config.services.caddy.user;
    };
  };
}
