# NixOS VM test: node `sink` runs services.greenflow.sink; node `cluster` runs Prometheus (agent mode) with the
# configuration `greenflow sink prometheus-config` renders: remote write through Caddy with the writer's credential
# (`greenflow-writer`, whose password the sink generates on first start; the test copies it over, as `greenflow
# cluster install` puts it into the cluster's Secret) and the run labels as external labels. Asserts the samples via
# the query API (with the owner's credential), 401 without, the writer refused everything but remote write,
# VictoriaMetrics' admin endpoints closed through Caddy (403) and keyed on its own port, Caddy's admin API on a private
# unix socket that `systemctl reload caddy` reaches, VictoriaMetrics' data where /etc/greenflow/greenflow.yaml says,
# Grafana healthy with the provisioned datasource, and a changed password file taking effect. nixpkgs 25.11's
# Prometheus is 3.x: agent mode is `--agent` (Prometheus 2's `--enable-feature=agent` is gone;
# nixos/modules/services/monitoring/prometheus/default.nix passes `--agent` for enableAgentMode), and promtool is in
# the `cli` output (pkgs/by-name/pr/prometheus/package.nix: `moveToOutput bin/promtool $cli`).
{
  pkgs,
  sinkModule,
  greenflow,
}:
let
  # Test-only secrets: in the store because this is a throwaway VM. The sink reads the owner's password from a copy
  # it may change (tmpfiles writes it at boot), to show that a new password takes effect. The writer's password is the
  # one the sink generates (no writerPasswordFile); the cluster's Prometheus reads it as a systemd credential.
  sinkPasswordFile = "/var/lib/greenflow-test/sink-password";
  clusterWriterPasswordFile = "/var/lib/greenflow-test/writer-password";
  writerCredential = "/run/credentials/prometheus-agent.service/writer-password";
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
          --password-file ${writerCredential} \
          --label greenflow_run=${run} --label greenflow_experiment=vm-test \
          --self-target 127.0.0.1:9090 > $out
        promtool check config --syntax-only $out
        # The writer's credential, never the owner's.
        grep -q 'greenflow-writer' $out
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
  # (`greenflow sink prometheus-config`), made at build time with the package under test. The test starts it once it
  # has copied the writer's password over.
  nodes.cluster = {
    environment.systemPackages = [ pkgs.curl ];
    systemd.services.prometheus-agent = {
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = "${pkgs.prometheus}/bin/prometheus --agent --config.file=${clusterPrometheusConfig} --storage.agent.path=/var/lib/prometheus-agent --web.listen-address=127.0.0.1:9090";
        DynamicUser = true;
        StateDirectory = "prometheus-agent";
        # The file stays root's; the DynamicUser reads systemd's copy.
        LoadCredential = [ "writer-password:${clusterWriterPasswordFile}" ];
        Restart = "on-failure";
      };
    };
  };

  testScript = ''
    import json

    def status(node, args):
        """The HTTP status of `curl ARGS` on node (-g: URLs with [] and {} as they are)."""
        return int(node.succeed("curl -s -g -o /dev/null -w '%{http_code}' " + args).strip())

    owner = "greenflow:vm-test-password"
    query = "curl -sf -u " + owner + " --data-urlencode 'query=up{greenflow_run=\"${run}\",greenflow_experiment=\"vm-test\"}' http://127.0.0.1:8080/vm/api/v1/query"
    # An empty remote write: it passes authentication and is then VictoriaMetrics' to judge (204, or 400 for the empty
    # body), while a refused credential gets 401 and an unrouted path 403.
    empty_write = "-X POST -H 'Content-Encoding: snappy' -H 'Content-Type: application/x-protobuf' --data-binary @/dev/null"
    written = (200, 204, 400)

    start_all()
    sink.wait_for_unit("victoriametrics.service")
    sink.wait_for_unit("caddy.service")
    sink.wait_for_unit("grafana.service")
    sink.wait_for_open_port(8080)
    sink.wait_for_open_port(8081)
    sink.wait_for_open_port(3000)

    with subtest("the writer's password is generated where the CLI reads it"):
        writer_file = "/var/lib/greenflow/secrets/sink-writer-password"
        sink.succeed("test \"$(stat -c %a /var/lib/greenflow/secrets)\" = 700")
        sink.succeed(f"test \"$(stat -c '%a %U' {writer_file})\" = '600 root'")
        writer_password = sink.succeed(f"cat {writer_file}").strip()
        assert len(writer_password) >= 32 and writer_password.isalnum(), "a long alphanumeric writer password"
        urls = json.loads(sink.succeed("GREENFLOW_SINK_PASSWORD=vm-test-password greenflow sink url --show-password --json"))
        assert urls["writer_username"] == "greenflow-writer", urls
        assert urls["writer_password"] == writer_password, "greenflow sink url shows another writer password"
        writer = "greenflow-writer:" + writer_password

    with subtest("the cluster holds the writer's credential"):
        cluster.succeed(
            "install -d -m 0700 /var/lib/greenflow-test",
            f"printf %s '{writer_password}' > ${clusterWriterPasswordFile}",
            "chmod 0600 ${clusterWriterPasswordFile}",
            "systemctl start prometheus-agent.service",
        )
        cluster.wait_for_unit("prometheus-agent.service")

    with subtest("no password, no data"):
        assert status(sink, "http://127.0.0.1:8080/vm/api/v1/query?query=up") == 401
        assert status(cluster, "-X POST http://sink:8081/vm/api/v1/write") == 401

    with subtest("the cluster's samples arrive with the run labels"):
        sink.wait_until_succeeds(query + " | jq -e '.data.result | length > 0'", timeout=180)

    with subtest("the writer may remote-write and nothing else"):
        assert status(cluster, f"-u {writer} {empty_write} http://sink:8081/vm/api/v1/write") in written
        assert status(sink, f"-u {owner} {empty_write} http://127.0.0.1:8080/vm/api/v1/write") in written
        assert status(sink, f"-u {writer} http://127.0.0.1:8080/vm/api/v1/query?query=up") == 401
        assert status(cluster, f"-u {writer} http://sink:8081/vm/api/v1/query?query=up") == 401
        assert status(sink, f"-u {writer} -X POST --data-binary 'greenflow_vm_test 1' http://127.0.0.1:8080/vm/api/v1/import/prometheus") == 401
        assert status(sink, f"-u {owner} http://127.0.0.1:8080/vm/api/v1/query?query=up") == 200

    with subtest("VictoriaMetrics' admin endpoints: not routed through Caddy, keyed on its own port"):
        delete = "-X POST 'http://127.0.0.1:8080/vm/api/v1/admin/tsdb/delete_series?match[]=up'"
        assert status(sink, f"-u {owner} {delete}") == 403
        assert status(sink, f"-u {writer} {delete}") in (401, 403)
        assert status(sink, f"-u {owner} -X POST http://127.0.0.1:8080/vm/snapshot/create") == 403
        sink.succeed(query + " | jq -e '.data.result | length > 0'")
        without_key = status(sink, "-X POST http://127.0.0.1:8428/snapshot/create")
        assert not 200 <= without_key < 300, f"VictoriaMetrics took /snapshot/create without the key: {without_key}"
        key_file = "/var/lib/greenflow/secrets/victoria-metrics-admin-key"
        sink.succeed(f"test \"$(stat -c '%a %U' {key_file})\" = '600 root'")
        assert status(sink, f"\"http://127.0.0.1:8428/snapshot/list?authKey=$(cat {key_file})\"") == 200
        # The key reaches VictoriaMetrics through an environment file systemd reads as root: on no command line, in
        # no unit file.
        env_file = "/run/greenflow-sink-victoriametrics/victoriametrics.env"
        sink.succeed(f"test \"$(stat -c '%a %U' {env_file})\" = '600 root'")
        sink.succeed(f"grep -q '^GREENFLOW_VM_snapshotAuthKey=' {env_file}")
        sink.succeed("systemctl show -P ExecStart victoriametrics.service | grep -q -- -envflag.prefix=GREENFLOW_VM_")
        sink.fail(f"tr '\\0' ' ' < /proc/$(systemctl show -P MainPID victoriametrics.service)/cmdline | grep -qF \"$(cat {key_file})\"")
        sink.fail(f"systemctl cat victoriametrics.service | grep -qF \"$(cat {key_file})\"")

    with subtest("Caddy's admin API is a unix socket in a directory only Caddy's user enters"):
        sink.succeed("test \"$(stat -c '%a %U' /run/greenflow-sink/sink/caddy-admin)\" = '700 caddy'")
        sink.succeed("test -S /run/greenflow-sink/sink/caddy-admin/admin.sock")
        sink.fail("curl -s http://127.0.0.1:2019/config/")
        # Caddy accepts an empty Host, 127.0.0.1 or ::1 on its admin socket.
        sink.succeed("curl -sf --unix-socket /run/greenflow-sink/sink/caddy-admin/admin.sock http://127.0.0.1/config/ | jq -e .apps")
        # The caddy module's ExecReload (`caddy reload`, as Caddy's user) finds the socket in the configuration.
        sink.succeed("systemctl reload caddy.service")
        assert status(sink, f"-u {owner} http://127.0.0.1:8080/vm/api/v1/query?query=up") == 200

    with subtest("VictoriaMetrics keeps its data in <paths.data_dir>/victoria-metrics, as the CLI expects"):
        sink.succeed("test \"$(jq -r .paths.data_dir /etc/greenflow/greenflow.yaml)\" = /var/lib/greenflow")
        sink.succeed("test -n \"$(ls -A /var/lib/greenflow/victoria-metrics/)\"")
        sink.succeed("systemctl show -P ExecStart victoriametrics.service | grep -q -- -storageDataPath=/var/lib/greenflow/victoria-metrics")

    with subtest("no password enters the store"):
        sink.fail("grep -r vm-test-password /etc/caddy/caddy_config")
        sink.fail(f"grep -rF '{writer_password}' /etc/caddy/caddy_config /etc/greenflow/greenflow.yaml")
        sink.succeed("grep -q GREENFLOW_SINK_PASSWORD_HASH /etc/caddy/caddy_config")
        sink.succeed("grep -q GREENFLOW_SINK_WRITER_PASSWORD_HASH /etc/caddy/caddy_config")
        sink.succeed("grep -q GREENFLOW_SINK_READER_PASSWORD_HASH /etc/caddy/caddy_config")

    with subtest("Grafana is healthy behind /grafana/ with the datasource provisioned"):
        sink.wait_until_succeeds("curl -sf http://127.0.0.1:8080/grafana/api/health | jq -e '.database == \"ok\"'", timeout=120)
        sink.succeed("curl -sf -u admin:vm-test-grafana http://127.0.0.1:8080/grafana/api/datasources/uid/greenflow-victoriametrics | jq -e '.type == \"prometheus\"'")
        sink.succeed("curl -sf -u admin:vm-test-grafana 'http://127.0.0.1:8080/grafana/api/search?query=' | jq -e 'length > 0'")
        # Grafana queries through Caddy as the reader, whose credential reads and does nothing else.
        sink.succeed("curl -sf -u admin:vm-test-grafana http://127.0.0.1:8080/grafana/api/datasources/uid/greenflow-victoriametrics/health | jq -e '.status == \"OK\"'")
        reader = sink.succeed("cat /var/lib/greenflow/secrets/sink-reader-password").strip()
        assert status(sink, f"-u greenflow-reader:{reader} http://127.0.0.1:8080/vm/api/v1/query?query=up") == 200
        assert status(sink, f"-u greenflow-reader:{reader} 'http://127.0.0.1:8080/vm/api/v1/export?match[]=up'") == 401
        assert status(sink, f"-u greenflow-reader:{reader} -X POST --data-binary x http://127.0.0.1:8080/vm/api/v1/write") == 401

    with subtest("a changed password file is hashed again and Caddy restarted"):
        sink.succeed("printf vm-test-password-2 > ${sinkPasswordFile}")
        new_password = "curl -s -o /dev/null -w '%{http_code}' -u greenflow:vm-test-password-2 http://127.0.0.1:8080/vm/api/v1/query?query=up"
        sink.wait_until_succeeds("test \"$(" + new_password + ")\" = 200", timeout=60)
        assert status(sink, f"-u {owner} http://127.0.0.1:8080/vm/api/v1/query?query=up") == 401
        # The generated writer's password stays: the cluster keeps writing.
        sink.succeed(f"test \"$(cat {writer_file})\" = '{writer_password}'")
        assert status(sink, f"-u {writer} {empty_write} http://127.0.0.1:8080/vm/api/v1/write") in written
  '';
}
