# The home-manager module evaluated in a real home-manager configuration: the user units exist with the expected
# ExecStart, data lives under the XDG data directory, the CLI's configuration file names the same directories, given
# password files (the owner's, the writer's) are watched, VictoriaMetrics reads its admin keys from an environment
# file, Caddy's admin socket has its private directory, and no secret is in the rendered files.
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
  # ... with the writer's password given as a file, and with both.
  hmWriterFile = configuration {
    writerPasswordFile = "/run/user/1000/secrets/sink-writer-password";
  };
  hmBothFiles = configuration {
    passwordFile = "/run/user/1000/secrets/sink-password";
    writerPasswordFile = "/run/user/1000/secrets/sink-writer-password";
  };
  failedAssertions =
    sink: map (a: a.message) (builtins.filter (a: !a.assertion) (configuration sink).config.assertions);
  units = hm.config.systemd.user.services;
  dataDir = "/home/researcher/.local/share/greenflow";
  stateDir = "/home/researcher/.local/state/greenflow";
  # home-manager applies `lib.toList` to ExecStart: the evaluated value is a list of command lines.
  execStart = name: toString units.${name}.Service.ExecStart;
  cliConfig = hm.config.xdg.configFile."greenflow/greenflow.yaml".source;
  # The directory `greenflow sink render` wrote: greenflow.yaml's, with the Caddyfile beside it.
  rendered = dirOf (toString cliConfig);
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
    (expect (lib.hasInfix "try-restart greenflow-sink-secrets.service greenflow-caddy.service" (toString hmPasswordFile.config.systemd.user.services.greenflow-sink-password-changed.Service.ExecStart)) "a changed password file rehashes and restarts Caddy")
    (expect (
      hmPasswordFile.config.systemd.user.paths.greenflow-sink-password.Path.PathChanged == [
        "/run/user/1000/secrets/sink-password"
      ]
    ) "a given password file is watched")
    (expect (
      hmWriterFile.config.systemd.user.paths.greenflow-sink-password.Path.PathChanged == [
        "/run/user/1000/secrets/sink-writer-password"
      ]
    ) "a given writer password file is watched")
    (expect (
      hmBothFiles.config.systemd.user.paths.greenflow-sink-password.Path.PathChanged == [
        "/run/user/1000/secrets/sink-password"
        "/run/user/1000/secrets/sink-writer-password"
      ]
    ) "both given password files are watched")
    (expect (
      hmWriterFile.config.systemd.user.services ? greenflow-sink-password-changed
    ) "a changed writer password file rehashes and restarts Caddy")
    (expect (lib.hasInfix "-envflag.enable" (execStart "greenflow-victoriametrics")) "VictoriaMetrics reads flags from its environment")
    (expect (lib.hasInfix "-envflag.prefix=GREENFLOW_VM_" (execStart "greenflow-victoriametrics")) "with greenflow's prefix")
    (expect (
      units.greenflow-victoriametrics.Service.EnvironmentFile
      == "%t/greenflow-sink-victoriametrics/victoriametrics.env"
    ) "VictoriaMetrics' admin keys come from an environment file")
    (expect (
      builtins.elem "greenflow-sink-victoriametrics-key.service" units.greenflow-victoriametrics.Unit.Requires
      && builtins.elem "greenflow-sink-victoriametrics-key.service" units.greenflow-victoriametrics.Unit.After
    ) "VictoriaMetrics starts after its key oneshot")
    (expect (
      units.greenflow-sink-victoriametrics-key.Service.Type == "oneshot"
    ) "the key oneshot is a oneshot")
    (expect (
      !builtins.elem "greenflow-sink-secrets.service" (
        units.greenflow-victoriametrics.Unit.Requires or [ ]
      )
    ) "a changed password does not restart VictoriaMetrics")
    (expect (lib.hasInfix "install -d -m 0700" (toString units.greenflow-caddy.Service.ExecStartPre)) "Caddy's admin socket directory is private")
    (expect (lib.hasInfix "${stateDir}/sink/caddy-admin" (toString units.greenflow-caddy.Service.ExecStartPre)) "under <paths.state_dir>/sink/caddy-admin")
    (expect (failedAssertions { } == [ ]) "the default configuration passes its assertions")
    (expect (
      builtins.length (failedAssertions {
        passwordFile = "/run/user/1000/secrets/same";
        writerPasswordFile = "/run/user/1000/secrets/same";
      }) == 1
    ) "the writer's password file may not be the owner's")
    (expect (!lib.any (lib.hasInfix "adminPort") hm.config.warnings) "no warning by default")
    (expect (lib.any (lib.hasInfix "adminPort")
      (configuration { caddy.adminPort = 2019; }).config.warnings
    ) "caddy.adminPort, set, is said to be ignored")
    (expect (lib.any (lib.hasInfix "publicBind")
      (configuration { publicHost = "laptop.tail1234.ts.net"; }).config.warnings
    ) "a tailnet site on every interface is warned about")
    (expect (
      !lib.any (lib.hasInfix "publicBind")
        (configuration {
          publicHost = "laptop.tail1234.ts.net";
          publicBind = [ "100.101.102.103" ];
        }).config.warnings
    ) "a tailnet site bound to its address is not")
  ];
in
pkgs.runCommand "greenflow-home-manager-eval" { nativeBuildInputs = [ pkgs.jq ]; } ''
  # Forces the checks above and builds the activation packages (which render the configuration).
  echo ${toString (builtins.length (builtins.filter (c: c == null) checks))} checks passed
  test -e ${hm.activationPackage}
  test -e ${hmPasswordFile.activationPackage}
  test -e ${hmBothFiles.activationPackage}
  # The file the CLI reads names the directories the units use, and the port they listen on.
  jq -e '.paths.data_dir == "${dataDir}" and .paths.state_dir == "${stateDir}"
    and .sink.victoria_metrics.port == 18428' ${cliConfig}
  # The Caddyfile takes both hashes from the environment and serves its admin API on the socket the unit prepares.
  grep -qF '{$GREENFLOW_SINK_PASSWORD_HASH}' ${rendered}/caddy/Caddyfile
  grep -qF '{$GREENFLOW_SINK_WRITER_PASSWORD_HASH}' ${rendered}/caddy/Caddyfile
  grep -qF '{$GREENFLOW_SINK_READER_PASSWORD_HASH}' ${rendered}/caddy/Caddyfile
  grep -qF 'basicAuthPassword: "$__file{${dataDir}/secrets/sink-reader-password}"' \
    ${rendered}/grafana/provisioning/datasources/greenflow.yaml
  grep -qF 'unix/${stateDir}/sink/caddy-admin/admin.sock' ${rendered}/caddy/Caddyfile
  # The secrets oneshot hashes both passwords and keeps the writer's where the CLI reads it; the key oneshot sets
  # every admin key of this VictoriaMetrics (1.97 and later: -reloadAuthKey too). Both scripts parse.
  secrets=${toString units.greenflow-sink-secrets.Service.ExecStart}
  key=${toString units.greenflow-sink-victoriametrics-key.Service.ExecStart}
  bash -n "$secrets"
  bash -n "$key"
  grep -q GREENFLOW_SINK_WRITER_PASSWORD_HASH "$secrets"
  grep -q GREENFLOW_SINK_READER_PASSWORD_HASH "$secrets"
  grep -qF '${dataDir}/secrets/sink-reader-password' "$secrets"
  grep -qF '${dataDir}/secrets/sink-writer-password' "$secrets"
  grep -qF '${dataDir}/secrets/victoria-metrics-admin-key' "$key"
  for var in deleteAuthKey snapshotAuthKey forceMergeAuthKey search_resetCacheAuthKey pprofAuthKey flagsAuthKey \
    configAuthKey reloadAuthKey; do
    grep -q "GREENFLOW_VM_$var " "$key"
  done
  touch $out
''
