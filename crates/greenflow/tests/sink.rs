//! End-to-end tests of `greenflow sink` and `greenflow demo` on the real Debian binaries (VictoriaMetrics, Caddy,
//! Prometheus, node-exporter), on 127.0.0.1 with free ports.

mod common;

use std::time::{Duration, Instant};

use common::{Project, alive, assert_no_process_mentions, describe, free_port, program_version_output};
use nix::sys::signal::Signal;
use serde_json::Value;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn demo_data_arrives_with_both_external_labels() {
    let project = Project::new();
    project.sink_up();
    let output = project.run(&["demo", "--for", "2s", "--name", "label-check"]);
    assert!(output.status.success(), "{}", describe(&output));

    let runs: Value = serde_json::from_str(&project.ok(&["runs", "list", "--json"])).unwrap();
    let run = &runs[0];
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["name"], "label-check");
    assert_eq!(run["status"], "complete");
    assert_eq!(run["labels"]["greenflow_run"], id);
    assert_eq!(run["labels"]["greenflow_experiment"], "label-check");
    assert!(run["start"].as_str().unwrap() < run["end"].as_str().unwrap());

    let series = project
        .query(&format!(r#"up{{job="node-exporter", greenflow_run="{id}", greenflow_experiment="label-check"}}"#));
    assert_eq!(series.len(), 1, "{series:?}");
    let cpu = project.query(&format!(r#"count(node_cpu_seconds_total{{greenflow_run="{id}"}})"#));
    assert!(cpu[0]["value"][1].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(run["samples"].as_u64().unwrap() > 0);
}

#[test]
fn hand_configured_prometheus_can_write_with_sink_url_credentials() {
    let project = Project::new();
    project.sink_up();
    let urls = project.urls();
    let password_file = project.path().join("pw");
    std::fs::write(&password_file, urls["password"].as_str().unwrap()).unwrap();
    let port = free_port();
    // Written by hand from `sink url --json`, not by greenflow's renderer.
    let config = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    written_by: hand\nscrape_configs:\n  - job_name: self\n    \
         static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: {}\n    basic_auth:\n      \
         username: {}\n      password_file: {}\n    queue_config:\n      batch_send_deadline: 1s\n",
        urls["remote_write_url"].as_str().unwrap(),
        urls["username"].as_str().unwrap(),
        password_file.display()
    );
    std::fs::write(project.path().join("prometheus.yml"), config).unwrap();
    let mut prometheus = std::process::Command::new("prometheus")
        .args([
            common::prometheus_agent_flag(),
            format!("--config.file={}", project.path().join("prometheus.yml").display()),
            format!("--storage.agent.path={}", project.path().join("wal").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        project.wait_for_series(r#"up{written_by="hand", job="self"}"#, Duration::from_secs(60))
    });
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(result.unwrap().len(), 1);
}

#[test]
fn writes_and_queries_need_the_right_password() {
    let project = Project::new();
    project.sink_up();
    let urls = project.urls();
    let client = reqwest::blocking::Client::new();
    let write = urls["remote_write_url"].as_str().unwrap();
    let query = format!("{}/api/v1/query?query=up", urls["query_url"].as_str().unwrap());
    let import = format!("{}/api/v1/import/prometheus", urls["query_url"].as_str().unwrap());
    let password = urls["password"].as_str().unwrap();

    for (what, auth) in [("no credentials", None), ("wrong password", Some("not-the-password"))] {
        let with_auth = |request: reqwest::blocking::RequestBuilder| match auth {
            Some(pw) => request.basic_auth("greenflow", Some(pw)),
            None => request,
        };
        let status = with_auth(client.post(write).body(Vec::<u8>::new())).send().unwrap().status();
        assert_eq!(status, 401, "remote write with {what}");
        let status = with_auth(client.post(&import).body("probe 1")).send().unwrap().status();
        assert_eq!(status, 401, "import with {what}");
        let status = with_auth(client.get(&query)).send().unwrap().status();
        assert_eq!(status, 401, "query with {what}");
    }
    let status = client.get(&query).basic_auth("greenflow", Some(password)).send().unwrap().status();
    assert_eq!(status, 200, "query with the right password");
    let status = client.post(&import).basic_auth("greenflow", Some(password)).body("probe 1").send().unwrap().status();
    assert_eq!(status, 204, "import with the right password");
}

#[test]
fn data_survives_sink_down_and_up() {
    let project = Project::new();
    project.sink_up();
    let urls = project.urls();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let status = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/import/prometheus", urls["query_url"].as_str().unwrap()))
        .basic_auth("greenflow", Some(urls["password"].as_str().unwrap()))
        .body(format!("survivor{{run=\"a\"}} 42 {now_ms}\n"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 204);
    project.wait_for_series("survivor", Duration::from_secs(30));

    let down = project.run(&["sink", "down"]);
    assert!(down.status.success(), "{}", describe(&down));
    assert!(stderr(&down).contains("sink stopped"), "{}", describe(&down));
    let status = project.run(&["sink", "status"]);
    assert_eq!(status.status.code(), Some(1), "stopped sink: status exits 1\n{}", describe(&status));

    project.sink_up();
    let result = project.wait_for_series("survivor", Duration::from_secs(30));
    assert_eq!(result[0]["value"][1], "42");
    assert_eq!(result[0]["metric"]["run"], "a");
}

#[test]
fn status_reports_components_and_exit_codes() {
    let project = Project::new();
    let stopped = project.run(&["sink", "status", "--json"]);
    assert_eq!(stopped.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&stopped.stdout).unwrap();
    assert_eq!(json["running"], false);

    project.sink_up();
    let running = project.run(&["sink", "status", "--json"]);
    assert_eq!(running.status.code(), Some(0), "{}", describe(&running));
    let json: Value = serde_json::from_slice(&running.stdout).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["retention"], "100y");
    let components = json["components"].as_array().unwrap();
    let by_name = |name: &str| components.iter().find(|c| c["name"] == name).unwrap().clone();
    for name in ["victoria-metrics", "caddy"] {
        let c = by_name(name);
        assert_eq!(c["healthy"], true, "{c}");
        assert!(alive(c["pid"].as_u64().unwrap() as u32), "{c}");
    }
    // The version Caddy itself reports (`2.6.2`, `v2.10.2 h1:...`), whichever build the set under test has.
    let caddy_says = program_version_output("caddy", &["version"]);
    let caddy_version = by_name("caddy")["version"].as_str().unwrap().to_owned();
    assert!(
        !caddy_version.is_empty() && caddy_says.trim_start_matches('v').starts_with(&caddy_version),
        "{caddy_version} vs {caddy_says}"
    );
    // VictoriaMetrics is placed even when the build prints no version string (Debian's).
    let vm_version = by_name("victoria-metrics")["version"].as_str().unwrap().to_owned();
    assert!(vm_version.starts_with("1.") || vm_version.starts_with(">=1."), "{vm_version}");
    assert_eq!(by_name("victoria-metrics")["listen"], format!("127.0.0.1:{}", project.ports.vm));
    // No Grafana on the tests' PATH (common::test_path): reported, not a failure.
    let grafana = by_name("grafana");
    assert_eq!(grafana["installed"], false, "{grafana}");
    assert_eq!(grafana["healthy"], Value::Null);
    assert!(json["data_size_bytes"].as_u64().unwrap() > 0);

    let human = project.ok(&["sink", "status"]);
    assert!(
        human.contains("victoria-metrics") && human.contains("healthy") && human.contains("not installed"),
        "{human}"
    );
}

#[test]
fn a_crashed_component_is_restarted() {
    let project = Project::new();
    project.sink_up();
    let state = project.sink_state();
    let vm = state["components"].as_array().unwrap().iter().find(|c| c["name"] == "victoria-metrics").unwrap();
    let first_pid = vm["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid), Signal::SIGKILL).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = project.run(&["sink", "status", "--json"]);
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        let vm = json["components"].as_array().unwrap().iter().find(|c| c["name"] == "victoria-metrics").unwrap();
        if vm["restarts"] == 1 && vm["healthy"] == true {
            assert_ne!(vm["pid"].as_u64().unwrap() as i32, first_pid);
            assert_eq!(output.status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {json}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = std::fs::read_to_string(project.state_dir().join("sink/logs/supervisor.log")).unwrap();
    assert!(log.contains("exited unexpectedly"), "{log}");
}

fn foreground_sink_stops_cleanly(signal: Signal) {
    let project = Project::new();
    let mut sink = project.start(&["sink", "up"]);
    sink.wait_for("sink is up", Duration::from_secs(60));
    let pids: Vec<u32> = project.sink_state()["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["pid"].as_u64().map(|p| p as u32))
        .collect();
    assert_eq!(pids.len(), 2);
    let (status, stderr) = sink.signal_and_wait(signal, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("sink stopped"), "{stderr}");
    for pid in pids {
        assert!(!alive(pid), "component {pid} survived {signal}");
    }
    assert_no_process_mentions(&project.path().to_string_lossy(), Duration::from_secs(5));
    assert!(!project.state_dir().join("sink/sink.json").exists(), "state file left behind");
    assert_eq!(project.run(&["sink", "status"]).status.code(), Some(1));
}

#[test]
fn ctrl_c_of_sink_up_leaves_no_process() {
    foreground_sink_stops_cleanly(Signal::SIGINT);
}

#[test]
fn sigterm_of_sink_up_leaves_no_process() {
    foreground_sink_stops_cleanly(Signal::SIGTERM);
}

fn demo_stops_cleanly(signal: Signal) {
    let project = Project::new();
    let mut demo = project.start(&["demo"]);
    demo.wait_for("first sample in the sink", Duration::from_secs(90));
    // The stand-in's background supervisor, node-exporter and the agent.
    assert_eq!(common::pids_mentioning(&project.state_dir().join("local-cluster").to_string_lossy()).len(), 3);
    let (status, stderr) = demo.signal_and_wait(signal, Duration::from_secs(60));
    assert!(status.success(), "{status}\n{stderr}");
    assert_no_process_mentions(&project.path().to_string_lossy(), Duration::from_secs(5));
    let runs: Value = serde_json::from_str(&project.ok(&["runs", "list", "--json"])).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{stderr}");
    assert_eq!(runs[0]["status"], "complete", "{stderr}");
    assert!(runs[0]["end"].is_string(), "{}", runs[0]);
    assert!(runs[0]["samples"].as_u64().unwrap() > 0, "{}", runs[0]);
}

#[test]
fn ctrl_c_of_demo_leaves_no_process_and_records_the_run() {
    demo_stops_cleanly(Signal::SIGINT);
}

#[test]
fn sigterm_of_demo_leaves_no_process_and_records_the_run() {
    demo_stops_cleanly(Signal::SIGTERM);
}

#[test]
fn ctrl_c_before_the_first_sample_still_drains_and_cleans_up() {
    let project = Project::new();
    let mut demo = project.start(&["demo"]);
    demo.wait_for("waiting for the first sample", Duration::from_secs(60));
    let (status, stderr) = demo.signal_and_wait(Signal::SIGINT, Duration::from_secs(90));
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("interrupted before the first sample"), "{stderr}");
    assert_no_process_mentions(&project.path().to_string_lossy(), Duration::from_secs(5));
    let runs: Value = serde_json::from_str(&project.ok(&["runs", "list", "--json"])).unwrap();
    // What was scraped before Ctrl-C is drained into the sink like any run's end.
    assert_eq!(runs[0]["status"], "complete", "{}", runs[0]);
    assert_eq!(runs[0]["drain"]["outcome"], "drained", "{}", runs[0]);
}

#[test]
fn a_second_sink_up_says_it_already_runs() {
    let project = Project::new();
    project.sink_up();
    let again = project.run(&["sink", "up"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(stderr(&again).contains("already running"), "{}", describe(&again));
}

#[test]
fn missing_binary_names_the_packages() {
    let project = Project::new().env("PATH", "/nonexistent");
    let output = project.run(&["sink", "up"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let err = stderr(&output);
    assert!(err.contains("VictoriaMetrics is not installed"), "{err}");
    assert!(err.contains("victoria-metrics") && err.contains("victoriametrics"), "{err}");
    assert!(err.contains("sink.victoria_metrics.binary"), "{err}");
    // Both missing programs at once, one line each after the count.
    assert!(err.starts_with("greenflow: 2 problems, each to fix:\n"), "{err}");
    assert!(err.contains("Caddy is not installed") && err.contains("sink.caddy.binary"), "{err}");
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(!project.state_dir().join("sink/sink.json").exists());
}

#[test]
fn port_in_use_names_the_port_and_key() {
    let project = Project::new();
    let _busy = std::net::TcpListener::bind(("127.0.0.1", project.ports.http)).unwrap();
    for args in [&["sink", "up"][..], &["sink", "up", "--detach"][..]] {
        let output = project.run(args);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let err = stderr(&output);
        assert!(err.contains(&format!("port {} ", project.ports.http)), "{err}");
        assert!(err.contains("sink.http_port"), "{err}");
    }
    assert!(common::pids_mentioning(&project.path().to_string_lossy()).is_empty());
}

#[test]
fn bad_config_key_suggests_the_nearest() {
    let project = Project::new();
    std::fs::write(project.path().join("greenflow.yaml"), "sink:\n  retension: 10y\n").unwrap();
    let output = project.run(&["sink", "up"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("unknown key `sink.retension`"), "{err}");
    assert!(err.contains("did you mean `sink.retention`"), "{err}");
    assert!(err.contains("greenflow.yaml"), "{err}");
    assert!(!project.data_dir().exists(), "nothing may be created on bad config");
}

#[test]
fn bad_retention_value_says_how_to_fix_it() {
    let project = Project::new();
    std::fs::write(project.path().join("greenflow.yaml"), "sink:\n  retention: 10x\n").unwrap();
    let output = project.run(&["sink", "up"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("sink.retention"), "{err}");
    assert!(err.contains("`10x`") && err.contains("100y"), "{err}");
    assert!(!project.data_dir().exists());
}

#[test]
fn the_password_is_generated_private_and_never_printed_unasked() {
    let project = Project::new();
    let up = project.run(&["sink", "up", "--detach"]);
    assert!(up.status.success(), "{}", describe(&up));
    let path = project.data_dir().join("secrets/sink-password");
    let password = std::fs::read_to_string(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(password.len() >= 32);
    let mut everything = describe(&up);
    everything += &describe(&project.run(&["sink", "url"]));
    everything += &describe(&project.run(&["sink", "url", "--json"]));
    everything += &describe(&project.run(&["sink", "status", "--json"]));
    everything += &describe(&project.run(&["config", "show"]));
    for log in std::fs::read_dir(project.state_dir().join("sink/logs")).unwrap() {
        everything += &std::fs::read_to_string(log.unwrap().path()).unwrap();
    }
    assert!(!everything.contains(password.trim()), "the password leaked");
    assert!(project.ok(&["sink", "url", "--show-password"]).contains(password.trim()));
}

#[test]
fn the_environment_password_wins() {
    let project = Project::new().env("GREENFLOW_SINK_PASSWORD", "correct horse battery staple");
    project.sink_up();
    assert_eq!(project.password(), "correct horse battery staple");
    assert_eq!(project.query("vector(1)").len(), 1, "queries work with the password from the environment");
}

#[test]
fn status_and_url_without_the_password_variable_create_no_secret_and_keep_the_sink_healthy() {
    let project = Project::new().env("GREENFLOW_SINK_PASSWORD", "correct horse battery staple");
    project.sink_up();
    let secrets = project.data_dir().join("secrets");
    let before: Vec<_> = std::fs::read_dir(&secrets).unwrap().map(|e| e.unwrap().file_name()).collect();
    // Another shell, without the variable.
    let look = |args: &[&str]| project.cmd(args).env_remove("GREENFLOW_SINK_PASSWORD").output().unwrap();
    let status = look(&["sink", "status"]);
    let url = look(&["sink", "url"]);
    let shown = look(&["sink", "url", "--show-password"]);
    let after: Vec<_> = std::fs::read_dir(&secrets).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "no secret was created");
    assert!(!secrets.join("sink-password").exists());
    assert_eq!(status.status.code(), Some(0), "the sink is healthy: {}", describe(&status));
    assert!(url.status.success(), "{}", describe(&url));
    // The password it cannot know is not made up: it says where it comes from instead.
    let text = describe(&shown);
    assert!(!text.contains("correct horse"), "{text}");
    assert!(text.contains("GREENFLOW_SINK_PASSWORD"), "{text}");
    // With the variable, the same commands see the same healthy sink.
    assert_eq!(project.run(&["sink", "status"]).status.code(), Some(0));
}

#[test]
fn a_read_only_victoria_metrics_is_unhealthy_and_names_the_disk() {
    // VictoriaMetrics turns read-only (and refuses every write with 503) when its disk's free space falls below
    // -storage.minFreeDiskSpaceBytes: a limit above any disk makes that happen at once.
    let project = Project::new();
    let path = project.path().join("greenflow.yaml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "  victoria_metrics:\n",
        "  victoria_metrics:\n    extra_args: [\"-storage.minFreeDiskSpaceBytes=1000000000000000\"]\n",
    );
    std::fs::write(&path, config).unwrap();
    let output = project.run(&["sink", "up", "--detach", "--timeout", "8s"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let err = stderr(&output);
    assert!(err.contains("read-only") && err.contains("victoria-metrics"), "{err}");
    assert!(err.contains(&project.data_dir().join("victoria-metrics").display().to_string()), "names the disk: {err}");
}

/// A stand-in `tailscale` (Tailscale cannot be installed on the test machines) whose `status --json` prints what
/// Tailscale's `ipnstate.Status` holds (`ipn/ipnstate/ipnstate.go`: `BackendState`, `Self.DNSName` with its trailing
/// dot, `Self.TailscaleIPs`), here with a second loopback address standing in for the tailnet address.
fn with_stand_in_tailscale(project: Project, backend_state: &str, address: &str) -> Project {
    let bin = project.path().join("tailscale-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let status = serde_json::json!({
        "BackendState": backend_state,
        "Self": {"HostName": "laptop", "DNSName": "laptop.tail1234.ts.net.", "TailscaleIPs": [address]},
        "MagicDNSSuffix": "tail1234.ts.net",
    });
    let script = bin.join("tailscale");
    std::fs::write(
        &script,
        // Every call is logged; `funnel ...` succeeds silently as `tailscale funnel --bg` does once it is set.
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = funnel ] && exit 0\n[ \"$1 $2\" = 'status --json' ] || exit 64\n\
             cat <<'JSON'\n{status}\nJSON\n",
            bin.join("calls").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(common::test_path());
    project.env("PATH", path.to_str().unwrap())
}

/// The stand-in `tailscale`'s calls so far, one per line.
fn tailscale_calls(project: &Project) -> Vec<String> {
    let text = std::fs::read_to_string(project.path().join("tailscale-bin/calls")).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

#[test]
fn funnel_publishes_a_write_only_site_for_the_writer_and_takes_it_down_with_the_sink() {
    let funnel_port = free_port();
    let config =
        format!("  public_host: laptop.tail1234.ts.net\n  funnel_port: {funnel_port}\ncluster:\n  reach: funnel\n");
    let project = with_stand_in_tailscale(Project::with_config(&config), "Running", "127.0.0.2");
    project.sink_up();
    let publish = format!("funnel --bg --yes --https=443 http://127.0.0.1:{funnel_port}");
    assert!(tailscale_calls(&project).contains(&publish), "{:?}", tailscale_calls(&project));
    let caddyfile = std::fs::read_to_string(project.state_dir().join("sink/caddy/Caddyfile")).unwrap();
    assert!(!caddyfile.contains("https://laptop.tail1234.ts.net {"), "tailscaled serves the name, not Caddy");
    // The published site: remote write for the writer only; the owner's password (maybe chosen by hand) and every
    // other path get nothing.
    let client = reqwest::blocking::Client::new();
    let writer = project.run(&["sink", "url", "--json", "--show-password"]);
    let url: serde_json::Value = serde_json::from_slice(&writer.stdout).unwrap();
    let writer_password = url["writer_password"].as_str().expect("the writer's password");
    let owner_password = url["password"].as_str().expect("the owner's password");
    let write = |user: &str, password: &str| {
        client
            .post(format!("http://127.0.0.1:{funnel_port}/vm/api/v1/write"))
            .basic_auth(user, Some(password))
            .body(Vec::<u8>::new())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", funnel_port)).is_err() {
        assert!(Instant::now() < deadline, "the Funnel site does not listen");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past basic auth and routed to VictoriaMetrics (an empty body is 204 on 1.1xx, 400 on 1.79).
    let status = write("greenflow-writer", writer_password);
    assert!(status == 204 || status == 400, "the writer may write through Funnel: {status}");
    assert_eq!(write("greenflow", owner_password), 401, "the owner is not served on the internet");
    let query = client
        .get(format!("http://127.0.0.1:{funnel_port}/vm/api/v1/query?query=up"))
        .basic_auth("greenflow", Some(owner_password))
        .send()
        .unwrap();
    assert_eq!(query.status().as_u16(), 404);
    let down = project.run(&["sink", "down"]);
    assert!(down.status.success(), "{}", describe(&down));
    assert_eq!(tailscale_calls(&project).last().map(String::as_str), Some("funnel --https=443 off"));
}

#[test]
fn the_tailnet_site_listens_on_the_tailnet_address_only() {
    let port = free_port();
    let config = format!("  public_host: https://laptop.tail1234.ts.net:{port}\n");
    let project = with_stand_in_tailscale(Project::with_config(&config), "Running", "127.0.0.2");
    project.sink_up();
    let caddyfile = std::fs::read_to_string(project.state_dir().join("sink/caddy/Caddyfile")).unwrap();
    assert!(caddyfile.contains("bind 127.0.0.2\n"), "{caddyfile}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.2", port)).is_err() {
        assert!(Instant::now() < deadline, "the tailnet site does not listen on 127.0.0.2:{port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the tailnet site listens on 127.0.0.1 too");
}

#[test]
fn a_tailnet_name_without_a_running_tailscale_is_refused_before_anything_starts() {
    let config = "  public_host: laptop.tail1234.ts.net\n";
    for (project, expected) in [
        (Project::with_config(config), "`tailscale` is not on PATH"),
        (with_stand_in_tailscale(Project::with_config(config), "NeedsLogin", "100.101.102.103"), "run `tailscale up`"),
    ] {
        let output = project.run(&["sink", "up", "--detach"]);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let err = stderr(&output);
        assert!(err.contains("sink.public_host") && err.contains(expected), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!project.state_dir().join("sink/sink.json").exists());
        assert_no_process_mentions(&project.path().to_string_lossy(), Duration::from_secs(2));
    }
}

/// Caddy answers a Host it does not serve with an empty 200, which a Prometheus counts as a successful write: the
/// loopback site takes any Host, and the public site refuses other names with 421.
#[test]
fn no_write_is_answered_200_for_a_site_it_did_not_reach() {
    let port = free_port();
    let project = Project::with_config(&format!("  public_host: http://sink.example.org:{port}\n"));
    project.sink_up();
    let client = reqwest::blocking::Client::new();
    let write = |port: u16, host: &str| {
        client
            .post(format!("http://127.0.0.1:{port}/vm/api/v1/write"))
            .header("Host", host)
            .body(Vec::<u8>::new())
            .send()
            .unwrap()
    };
    let loopback = project.ports.http;
    assert_eq!(write(loopback, &format!("localhost:{loopback}")).status().as_u16(), 401, "loopback by another name");
    assert_eq!(write(port, &format!("sink.example.org:{port}")).status().as_u16(), 401, "the public name");
    let misdirected = write(port, &format!("100.101.102.103:{port}"));
    assert_eq!(misdirected.status().as_u16(), 421);
    assert!(misdirected.text().unwrap().contains("sink.example.org"));
}

#[test]
fn funnel_refuses_a_writer_password_greenflow_did_not_generate() {
    let config =
        format!("  public_host: laptop.tail1234.ts.net\n  funnel_port: {}\ncluster:\n  reach: funnel\n", free_port());
    let project = with_stand_in_tailscale(Project::with_config(&config), "Running", "127.0.0.2");
    let secrets = project.data_dir().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("sink-writer-password"), "hunter2").unwrap();
    std::fs::set_permissions(secrets.join("sink-writer-password"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let output = project.run(&["sink", "up", "--detach"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let err = stderr(&output);
    assert!(err.contains("cluster.reach `funnel`") && err.contains("32 random characters"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(tailscale_calls(&project).iter().all(|c| !c.starts_with("funnel")), "nothing was published");
    assert_no_process_mentions(&project.path().to_string_lossy(), Duration::from_secs(5));
}

#[test]
fn the_operator_route_adds_the_egress_services_name_to_the_tailnet_site() {
    let port = free_port();
    let config = format!("  public_host: https://laptop.tail1234.ts.net:{port}\ncluster:\n  reach: operator\n");
    let project = with_stand_in_tailscale(Project::with_config(&config), "Running", "127.0.0.2");
    // The real Caddy takes the alias site (its own CA, kept out of the trust store) and the 421 catch-all.
    project.sink_up();
    let caddyfile = std::fs::read_to_string(project.state_dir().join("sink/caddy/Caddyfile")).unwrap();
    let alias = format!("https://greenflow-sink.monitoring.svc.cluster.local:{port} {{");
    assert!(caddyfile.contains(&alias), "{caddyfile}");
    assert!(caddyfile.contains(&format!("https://:{port} {{")), "{caddyfile}");
    let status = project.run(&["sink", "status", "--json"]);
    assert!(status.status.success(), "{}", describe(&status));
}
