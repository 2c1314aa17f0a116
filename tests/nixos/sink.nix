# NixOS VM test: node `sink` runs services.greenflow.sink; node `cluster` runs Prometheus (agent mode) with the
# configuration `greenflow sink prometheus-config` renders: remote write through Caddy with basic auth and the run
# labels as external labels. Asserts the samples via the query API (with auth),
# 401 without, and Grafana healthy with the provisioned datasource.
{
  pkgs,
  sinkModule,
  greenflow,
}:
let
  # Test-only secrets: in the store because this is a throwaway VM.
  password = pkgs.writeText "sink-password" "vm-test-password";
  grafanaAdminPassword = pkgs.writeText "grafana-admin-password" "vm-test-grafana";
  grafanaSecretKey = pkgs.writeText "grafana-secret-key" "vm-test-secret-key-0123456789";
  run = "20260101T000000Z-vmt1";
  clusterPrometheusConfig =
    pkgs.runCommand "cluster-prometheus.yml"
      {
        nativeBuildInputs = [
          greenflow
          pkgs.prometheus
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
      passwordFile = "${password}";
      grafana = {
        adminPasswordFile = "${grafanaAdminPassword}";
        secretKeyFile = "${grafanaSecretKey}";
      };
    };
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
        ExecStart = "${pkgs.prometheus}/bin/prometheus --enable-feature=agent --config.file=${clusterPrometheusConfig} --storage.agent.path=/var/lib/prometheus-agent --web.listen-address=127.0.0.1:9090";
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

    with subtest("the password never enters the store"):
        sink.fail("grep -r vm-test-password /etc/caddy/caddy_config")
        sink.succeed("grep -q GREENFLOW_SINK_PASSWORD_HASH /etc/caddy/caddy_config")

    with subtest("Grafana is healthy behind /grafana/ with the datasource provisioned"):
        sink.wait_until_succeeds("curl -sf http://127.0.0.1:8080/grafana/api/health | jq -e '.database == \"ok\"'", timeout=120)
        sink.succeed("curl -sf -u admin:vm-test-grafana http://127.0.0.1:8080/grafana/api/datasources/uid/greenflow-victoriametrics | jq -e '.type == \"prometheus\"'")
        sink.succeed("curl -sf -u admin:vm-test-grafana 'http://127.0.0.1:8080/grafana/api/search?query=' | jq -e 'length > 0'")
  '';
}
