# The options the NixOS and home-manager modules share: the sink as `greenflow sink up` runs it. Ports and paths
# default to greenflow's own defaults, so the CLI finds a sink these modules run.
{
  lib,
  pkgs,
  # config.services.greenflow.sink, for defaults that follow other options.
  cfg,
}:
let
  inherit (lib) mkOption mkEnableOption types;
in
{
  enable = mkEnableOption "the greenflow sink (VictoriaMetrics, Caddy and Grafana)";

  package = mkOption {
    type = types.package;
    defaultText = lib.literalExpression "greenflow.packages.\${system}.greenflow";
    description = ''
      The greenflow package, installed for users of this machine. The flake's module sets it to the flake's own
      package for the host's system.
    '';
  };

  renderPackage = mkOption {
    type = types.package;
    default =
      if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then
        cfg.package
      else
        throw "services.greenflow.sink.renderPackage must be set when cross-compiling: greenflow built for the build platform (pkgs.buildPackages), which runs `greenflow sink render` while the system is built. The flake's module sets it.";
    defaultText = lib.literalMD ''
      `package` when the build platform can run it; when cross-compiling the flake's module builds greenflow from
      `pkgs.buildPackages`
    '';
    description = ''
      The greenflow that renders the Caddyfile and Grafana's provisioning (`greenflow sink render`) while the system
      is built: it runs on the build platform, so a cross-built system needs greenflow built for that platform.
    '';
  };

  publicHost = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "laptop.tail1234.ts.net";
    description = ''
      The name (a tailnet name) or https URL the cluster reaches this machine at (`sink.public_host`). Caddy serves
      a TLS site for it; a `*.ts.net` certificate comes from tailscaled. For a tailnet name the NixOS module opens
      the site's port (443, or the URL's) in the firewall on the Tailscale interface only; any other address is
      yours to open.
    '';
  };

  publicBind = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [
      "100.101.102.103"
      "fd7a:115c:a1e0::1"
    ];
    description = ''
      The addresses Caddy's public site listens on (`greenflow sink render --bind`), e.g. this machine's tailnet
      addresses as `tailscale ip` prints them (they stay the same while the machine is in the tailnet). Empty: every
      interface, which the NixOS module's firewall keeps to the Tailscale interface; the home-manager module has no
      firewall to do that and warns.
    '';
  };

  retention = mkOption {
    type = types.str;
    default = "100y";
    description = "VictoriaMetrics retention (`sink.retention`): a whole number with h, d, w or y.";
  };

  username = mkOption {
    type = types.str;
    default = "greenflow";
    description = ''
      The owner's user name (`sink.username`): remote write, queries, export and import. The writer, the credential
      the cluster holds, is `<username>-writer`.
    '';
  };

  passwordFile = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "/run/secrets/greenflow-sink-password";
    description = ''
      File holding the owner's password (user `username`: remote write, queries, export and import). Only a path:
      the password never enters the Nix store; its bcrypt hash reaches Caddy at start through the environment, and
      is computed again (Caddy restarted) whenever the file is written anew or replaced. Required by the NixOS
      module; the home-manager module generates one in the data directory when unset, as `greenflow sink up` does.
    '';
  };

  writerPasswordFile = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "/run/secrets/greenflow-sink-writer-password";
    description = ''
      File holding the writer's password (user `<username>-writer`), the credential the cluster holds: it may only
      remote-write (`/vm/api/v1/write`). Only a path, hashed for Caddy like `passwordFile` and watched the same way;
      it must differ from the owner's. When unset, a password is generated on first start in
      `<data directory>/secrets/sink-writer-password` (0600), where `greenflow cluster install`, `greenflow run`
      and `greenflow sink url --show-password` read it; a file given here is copied there (0600) at every start,
      so that the CLI holds the same password. The data directory is /var/lib/greenflow for the NixOS module and
      `$XDG_DATA_HOME/greenflow` for the home-manager module.
    '';
  };

  httpPort = mkOption {
    type = types.port;
    default = 8080;
    description = "Caddy's loopback site (`sink.http_port`).";
  };

  caddy = {
    adminPort = mkOption {
      type = types.nullOr types.port;
      default = null;
      description = ''
        Deprecated and ignored (a warning says so when it is set; it will be removed). Caddy's admin API is no
        longer on a TCP port but on a unix socket in a directory only Caddy's user may enter:
        /run/greenflow-sink/sink/caddy-admin/admin.sock under NixOS,
        `$XDG_STATE_HOME/greenflow/sink/caddy-admin/admin.sock` under home-manager.
      '';
    };
    extraConfig = mkOption {
      type = types.lines;
      default = "";
      description = "Caddyfile text appended to the rendered Caddyfile.";
    };
  };

  victoriametrics = {
    port = mkOption {
      type = types.port;
      default = 8428;
      description = "VictoriaMetrics, on 127.0.0.1 only (`sink.victoria_metrics.port`).";
    };
    extraFlags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "-loggerLevel=WARN" ];
      description = "Extra VictoriaMetrics flags (`sink.victoria_metrics.extra_args`).";
    };
  };

  grafana = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to run Grafana behind `/grafana/` with the provisioned datasource and dashboard.";
    };
    port = mkOption {
      type = types.port;
      default = 3000;
      description = "Grafana on 127.0.0.1 (`sink.grafana.port`).";
    };
    adminUser = mkOption {
      type = types.str;
      default = "admin";
      description = "Grafana's admin user (`sink.grafana.admin_user`).";
    };
    adminPasswordFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "File holding Grafana's admin password (read through `$__file{}`).";
    };
    secretKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "File holding Grafana's `secret_key` (read through `$__file{}`).";
    };
  };
}
