# NixOS VM test: node `sink` runs services.greenflow.sink; node `cluster` runs Prometheus (agent mode) with the
# configuration `greenflow sink prometheus-config` renders: remote write through Caddy with basic auth and the run
# labels as external labels. Asserts the samples via the query API (with auth), 401 without, VictoriaMetrics' data
# where /etc/greenflow/greenflow.yaml says, Grafana healthy with the provisioned datasource, and a changed password
# file taking effect. nixpkgs 25.11's Prometheus is 3.x: agent mode is `--agent` (Prometheus 2's
# `--enable-feature=agent` is gone; nixos/modules/services/monitoring/prometheus/default.nix passes `--agent` for
# enableAgentMode), and promtool is in the `cli` output (pkgs/by-name/pr/prometheus/package.nix:
# `moveToOutput bin/promtool $cli`).
{
  pkgs,
  sinkModule,
  greenflow,
}:
let
  # Test-only secrets: in the store because this is a throwaway VM. The sink reads its password from a copy it may
  # change (tmpfiles writes it at boot), to show that a new password takes effect.
  password = pkgs.writeText "sink-password" "vm-test-password";
  sinkPasswordFile = "/var/lib/greenflow-test/sink-password";
  grafanaAdminPassword = pkgs.writeText "grafana-admin-password" "vm-test-grafana";
  grafanaSecretKey = pkgs.writeText "grafana-secret-key" "vm-test-secret-key-0123456789";
  run = "20260101T000000Z-vmt1";
  clusterPrometheusConfig =
    pkgs.runCommand "cluster-prometheus.yml"
      {
        nativeBuildInputs = [
          greenflow
          pkgs.prometheus.cli
        ];
      }
      ''
        export HOME="$TMPDIR"
        printf 'sink:\n  public_host: http://sink:8081\nlocal:\n  scrape_interval: 2s\n' > greenflow.yaml
        greenflow --config greenflow.yaml sink prometheus-config --public \
          --password-file ${password} \
          --label greenflow_run=${run} --label greenflow_experiment=vm-test \
          --self-target 127.0.0.1:9090 > $out
        promtool check config --syntax-only $out
      '';
in
pkgs.testers.runNixOSTest {
  name = "greenflow-sink";

  nodes.sink = {
    imports = [ sinkModule ];
    services.greenflow.sink = {
      enable = true;
      package = greenflow;
      # The cluster reaches the sink by name over plain http in the test network.
      publicHost = "http://sink:8081";
      passwordFile = sinkPasswordFile;
      grafana = {
        adminPasswordFile = "${grafanaAdminPassword}";
        secretKeyFile = "${grafanaSecretKey}";
      };
    };
    systemd.tmpfiles.rules = [
      "d /var/lib/greenflow-test 0700 root root -"
      "f ${sinkPasswordFile} 0600 root root - vm-test-password"
    ];
    # A public address that is not a tailnet name: the module opens no port for it, the owner does.
    networking.firewall.allowedTCPPorts = [ 8081 ];
    environment.systemPackages = [
      pkgs.curl
      pkgs.jq
    ];
    virtualisation.memorySize = 2048;
  };

  # The cluster's Prometheus runs the configuration greenflow renders for a Prometheus outside Kubernetes
  # (`greenflow sink prometheus-config`), made at build time with the package under test.
  nodes.cluster = {
    environment.systemPackages = [ pkgs.curl ];
    systemd.services.prometheus-agent = {
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = "${pkgs.prometheus}/bin/prometheus --agent --config.file=${clusterPrometheusConfig} --storage.agent.path=/var/lib/prometheus-agent --web.listen-address=127.0.0.1:9090";
        DynamicUser = true;
        StateDirectory = "prometheus-agent";
        Restart = "on-failure";
      };
    };
  };

  testScript = ''
    start_all()
    sink.wait_for_unit("victoriametrics.service")
    sink.wait_for_unit("caddy.service")
    sink.wait_for_unit("grafana.service")
    sink.wait_for_open_port(8080)
    sink.wait_for_open_port(8081)
    sink.wait_for_open_port(3000)
    cluster.wait_for_unit("prometheus-agent.service")

    with subtest("no password, no data"):
        sink.succeed("test \"$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/vm/api/v1/query?query=up)\" = 401")
        cluster.succeed("test \"$(curl -s -o /dev/null -w '%{http_code}' -X POST http://sink:8081/vm/api/v1/write)\" = 401")

    with subtest("the cluster's samples arrive with the run labels"):
        query = "curl -sf -u greenflow:vm-test-password --data-urlencode 'query=up{greenflow_run=\"${run}\",greenflow_experiment=\"vm-test\"}' http://127.0.0.1:8080/vm/api/v1/query"
        sink.wait_until_succeeds(query + " | jq -e '.data.result | length > 0'", timeout=180)

    with subtest("VictoriaMetrics keeps its data in <paths.data_dir>/victoria-metrics, as the CLI expects"):
        sink.succeed("test \"$(jq -r .paths.data_dir /etc/greenflow/greenflow.yaml)\" = /var/lib/greenflow")
        sink.succeed("test -n \"$(ls -A /var/lib/greenflow/victoria-metrics/)\"")
        sink.succeed("systemctl show -P ExecStart victoriametrics.service | grep -q -- -storageDataPath=/var/lib/greenflow/victoria-metrics")

    with subtest("the password never enters the store"):
        sink.fail("grep -r vm-test-password /etc/caddy/caddy_config")
        sink.succeed("grep -q GREENFLOW_SINK_PASSWORD_HASH /etc/caddy/caddy_config")

    with subtest("Grafana is healthy behind /grafana/ with the datasource provisioned"):
        sink.wait_until_succeeds("curl -sf http://127.0.0.1:8080/grafana/api/health | jq -e '.database == \"ok\"'", timeout=120)
        sink.succeed("curl -sf -u admin:vm-test-grafana http://127.0.0.1:8080/grafana/api/datasources/uid/greenflow-victoriametrics | jq -e '.type == \"prometheus\"'")
        sink.succeed("curl -sf -u admin:vm-test-grafana 'http://127.0.0.1:8080/grafana/api/search?query=' | jq -e 'length > 0'")

    with subtest("a changed password file is hashed again and Caddy restarted"):
        sink.succeed("printf vm-test-password-2 > ${sinkPasswordFile}")
        new_password = "curl -s -o /dev/null -w '%{http_code}' -u greenflow:vm-test-password-2 http://127.0.0.1:8080/vm/api/v1/query?query=up"
        sink.wait_until_succeeds("test \"$(" + new_password + ")\" = 200", timeout=60)
        sink.succeed("test \"$(curl -s -o /dev/null -w '%{http_code}' -u greenflow:vm-test-password http://127.0.0.1:8080/vm/api/v1/query?query=up)\" = 401")
  '';
}
