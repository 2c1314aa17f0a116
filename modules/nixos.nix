# `services.greenflow.sink`: the greenflow sink as system services, mapped onto nixpkgs' own modules
# (services.victoriametrics, services.caddy, services.grafana, services.tailscale). The Caddyfile and Grafana's
# provisioning are rendered by `greenflow sink render` (modules/render.nix), the same code as `greenflow sink up`.
# The nixpkgs options set here were checked against nixpkgs 4aa6836a648ca76c68866decf0c8965e36ec2a3b (a fork of
# master after 25.11: services.grafana's settings.server/security, provision.{datasources,dashboards}.path,
# services.caddy.{configFile,environmentFile}, services.victoriametrics, services.tailscale.{authKeyFile,permitCertUid})
# by evaluating this module with lib.evalModules beside those modules.
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
  runtimeDir = "/run/greenflow-sink";
  # Grafana reads its secrets from systemd credentials: the files may stay readable by root only.
  grafanaCredentials = "/run/credentials/grafana.service";
  rendered = import ./render.nix {
    inherit pkgs cfg;
    caddyPackage = config.services.caddy.package;
    dataDir = "/var/lib/greenflow";
    stateDir = runtimeDir;
    grafanaAdminPasswordFile = "${grafanaCredentials}/admin-password";
    grafanaSecretKeyFile = "${grafanaCredentials}/secret-key";
  };
  baseUrl = gflib.baseUrl { inherit (cfg) publicHost httpPort; };
in
{
  options.services.greenflow.sink = import ./options.nix { inherit lib; } // {
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
        assertion = gflib.validRetention cfg.retention;
        message = "services.greenflow.sink.retention = \"${cfg.retention}\" is not valid: use a whole number with h, d, w or y, e.g. \"100y\".";
      }
    ];

    environment.systemPackages = [ cfg.package ];
    # `greenflow` on this machine reads the same settings (ports, user name, public host) as the services.
    environment.etc."greenflow/greenflow.yaml".source = "${rendered}/greenflow.yaml";

    services.victoriametrics = {
      enable = true;
      listenAddress = "127.0.0.1:${toString cfg.victoriametrics.port}";
      retentionPeriod = cfg.retention;
      extraOptions = [ "-search.latencyOffset=2000ms" ] ++ cfg.victoriametrics.extraFlags;
    };

    # Caddy computes nothing itself: a oneshot turns the password file into the bcrypt hash the rendered
    # Caddyfile reads from the environment ({$GREENFLOW_SINK_PASSWORD_HASH}).
    systemd.services.greenflow-sink-password-hash = {
      description = "greenflow sink: the bcrypt hash of the sink password, for Caddy";
      before = [ "caddy.service" ];
      requiredBy = [ "caddy.service" ];
      path = [ config.services.caddy.package ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        RuntimeDirectory = "greenflow-sink";
        RuntimeDirectoryMode = "0700";
        RuntimeDirectoryPreserve = true;
        UMask = "0077";
        LoadCredential = [ "password:${toString cfg.passwordFile}" ];
      };
      script = ''
        password="$(cat "$CREDENTIALS_DIRECTORY/password")"
        hash="$(printf '%s\n' "$password" | caddy hash-password)"
        printf "GREENFLOW_SINK_PASSWORD_HASH='%s'\n" "$hash" > "$RUNTIME_DIRECTORY/caddy.env"
      '';
    };

    services.caddy = {
      enable = true;
      configFile = "${rendered}/caddy/Caddyfile";
      environmentFile = "${runtimeDir}/caddy.env";
    };

    systemd.services.caddy = {
      requires = [ "greenflow-sink-password-hash.service" ];
      after = [
        "greenflow-sink-password-hash.service"
        "victoriametrics.service"
      ]
      ++ optional cfg.tailscale.enable (
        if cfg.tailscale.authKeyFile != null then "tailscaled-autoconnect.service" else "tailscaled.service"
      );
      wants = optional cfg.tailscale.enable "tailscaled.service";
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

    systemd.services.grafana = mkIf cfg.grafana.enable {
      after = [ "victoriametrics.service" ];
      serviceConfig.LoadCredential = [
        "admin-password:${toString cfg.grafana.adminPasswordFile}"
        "secret-key:${toString cfg.grafana.secretKeyFile}"
      ];
    };

    services.tailscale = mkIf cfg.tailscale.enable {
      enable = true;
      authKeyFile = cfg.tailscale.authKeyFile;
      permitCertUid = config.services.caddy.user;
    };
  };
}
