# `services.greenflow.sink`: the greenflow sink as system services, mapped onto nixpkgs' own modules
# (services.victoriametrics, services.caddy, services.grafana, services.tailscale). The Caddyfile and Grafana's
# provisioning are rendered by `greenflow sink render` (modules/render.nix), the same code as `greenflow sink up`.
# The nixpkgs options set here were read in nixpkgs 4aa6836a648ca76c68866decf0c8965e36ec2a3b (a fork of master after
# 25.11): services.grafana's settings.server/security, provision.{datasources,dashboards}.path;
# services.caddy.{configFile,environmentFile}; services.victoriametrics.{listenAddress,retentionPeriod,extraOptions,
# stateDir}; services.tailscale.{authKeyFile,permitCertUid,interfaceName}; networking.firewall.interfaces. This module
# was evaluated with lib.evalModules beside stubs of those options.
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
  # greenflow.yaml's `paths.data_dir`. The CLI takes VictoriaMetrics' data to be `<data_dir>/victoria-metrics`
  # (crates/greenflow-config/src/paths.rs), and services.victoriametrics keeps it in /var/lib/<stateDir>
  # (nixos/modules/services/databases/victoriametrics.nix: -storageDataPath and StateDirectory): stateDir
  # "greenflow/victoria-metrics" makes the two one directory.
  dataDir = "/var/lib/greenflow";
  vmStateDir = "greenflow/victoria-metrics";
  runtimeDir = "/run/greenflow-sink";
  # Grafana reads its secrets from systemd credentials: the files may stay readable by root only.
  grafanaCredentials = "/run/credentials/grafana.service";
  rendered = import ./render.nix {
    inherit pkgs cfg;
    caddyPackage = config.services.caddy.package;
    inherit dataDir;
    stateDir = runtimeDir;
    grafanaAdminPasswordFile = "${grafanaCredentials}/admin-password";
    grafanaSecretKeyFile = "${grafanaCredentials}/secret-key";
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
        assertion = gflib.validRetention cfg.retention;
        message = "services.greenflow.sink.retention = \"${cfg.retention}\" is not valid: use a whole number with h, d, w or y, e.g. \"100y\".";
      }
    ];

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
      extraOptions = [ "-search.latencyOffset=2000ms" ] ++ cfg.victoriametrics.extraFlags;
    };

    # Caddy computes nothing itself: a oneshot turns the password file into the bcrypt hash the rendered
    # Caddyfile reads from the environment ({$GREENFLOW_SINK_PASSWORD_HASH}). Caddy Requires= it, so restarting the
    # oneshot restarts Caddy too (systemd.unit(5), Requires=).
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

    # A password file written anew or replaced (by hand, sops-nix, agenix) is hashed again and Caddy restarted with
    # the new hash: the path unit starts a oneshot that try-restarts both (Caddy is ordered after the hash).
    systemd.paths.greenflow-sink-password = {
      description = "greenflow sink: watch the sink password file";
      wantedBy = [ "multi-user.target" ];
      pathConfig = {
        PathChanged = toString cfg.passwordFile;
        Unit = "greenflow-sink-password-changed.service";
      };
    };
    systemd.services.greenflow-sink-password-changed = {
      description = "greenflow sink: hash the changed sink password again and restart Caddy";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = lib.escapeShellArgs [
          "${config.systemd.package}/bin/systemctl"
          "try-restart"
          "greenflow-sink-password-hash.service"
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
