# The home-manager module evaluated in a real home-manager configuration: the user units exist with the expected
# ExecStart, data lives under the XDG data directory, the CLI's configuration file names the same directories, a
# given password file is watched, and no secret is in the rendered files.
{
  pkgs,
  home-manager,
  homeModule,
}:
let
  inherit (pkgs) lib;
  configuration =
    sink:
    home-manager.lib.homeManagerConfiguration {
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
          }
          // sink;
        }
      ];
    };
  hm = configuration { };
  # The same sink with the password given as a file.
  hmPasswordFile = configuration { passwordFile = "/run/user/1000/secrets/sink-password"; };
  units = hm.config.systemd.user.services;
  dataDir = "/home/researcher/.local/share/greenflow";
  # home-manager applies `lib.toList` to ExecStart: the evaluated value is a list of command lines.
  execStart = name: toString units.${name}.Service.ExecStart;
  cliConfig = hm.config.xdg.configFile."greenflow/greenflow.yaml".source;
  expect = cond: message: if cond then null else throw "home-manager module: ${message}";
  checks = [
    (expect (lib.hasInfix "victoria-metrics" (execStart "greenflow-victoriametrics")) "greenflow-victoriametrics runs victoria-metrics")
    (expect (lib.hasInfix "-retentionPeriod=10y" (execStart "greenflow-victoriametrics")) "retention is passed")
    (expect (lib.hasInfix "-httpListenAddr=127.0.0.1:18428" (execStart "greenflow-victoriametrics")) "the port is passed")
    (expect (lib.hasInfix "-storageDataPath=${dataDir}/victoria-metrics" (execStart "greenflow-victoriametrics")) "data in <paths.data_dir>/victoria-metrics, under the XDG data directory")
    (expect (lib.hasInfix "/caddy/Caddyfile" (execStart "greenflow-caddy")) "greenflow-caddy runs the rendered Caddyfile")
    (expect (lib.hasInfix "grafana.ini" (execStart "greenflow-grafana")) "greenflow-grafana runs the rendered grafana.ini")
    (expect (
      units.greenflow-caddy.Install.WantedBy == [ "default.target" ]
    ) "greenflow-caddy starts with the session")
    (expect (lib.hasSuffix "/greenflow.yaml" (toString cliConfig)) "the CLI's configuration file is written")
    (expect (
      !hm.config.systemd.user.paths ? greenflow-sink-password
    ) "a generated password is not watched")
    (expect (
      hmPasswordFile.config.systemd.user.paths.greenflow-sink-password.Path.PathChanged
      == "/run/user/1000/secrets/sink-password"
    ) "a given password file is watched")
    (expect (lib.hasInfix "try-restart greenflow-sink-secrets.service greenflow-caddy.service" (toString hmPasswordFile.config.systemd.user.services.greenflow-sink-password-changed.Service.ExecStart)) "a changed password file rehashes and restarts Caddy")
  ];
in
pkgs.runCommand "greenflow-home-manager-eval" { nativeBuildInputs = [ pkgs.jq ]; } ''
  # Forces the checks above and builds the activation packages (which render the configuration).
  echo ${toString (builtins.length (builtins.filter (c: c == null) checks))} checks passed
  test -e ${hm.activationPackage}
  test -e ${hmPasswordFile.activationPackage}
  # The file the CLI reads names the directories the units use, and the port they listen on.
  jq -e '.paths.data_dir == "${dataDir}" and .paths.state_dir == "/home/researcher/.local/state/greenflow"
    and .sink.victoria_metrics.port == 18428' ${cliConfig}
  touch $out
''
