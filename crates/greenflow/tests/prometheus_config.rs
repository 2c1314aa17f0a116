//! End-to-end test of `greenflow sink prometheus-config`: the real Prometheus (agent mode) started with the printed
//! configuration writes its own samples, with the given labels, through Caddy's basic auth into the sink.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Project, free_port};

/// Stops the Prometheus the test started, however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_prometheus_with_the_printed_config_writes_labelled_samples_into_the_sink() {
    let project = Project::with_config("local:\n  scrape_interval: 1s\nremote_write:\n  batch_send_deadline: 1s\n");
    project.sink_up();
    let password_file = project.path().join("sink-password");
    // The writer's password: what a Prometheus outside the sink's machine holds.
    let writer_password = project.urls()["writer_password"].as_str().unwrap().to_owned();
    std::fs::write(&password_file, &writer_password).unwrap();
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let config = project.ok(&[
        "sink",
        "prometheus-config",
        "--password-file",
        password_file.to_str().unwrap(),
        "--label",
        "greenflow_run=20260101T000000Z-pcfg",
        "--label",
        "greenflow_experiment=prometheus-config",
        "--self-target",
        &target,
    ]);
    assert!(!config.contains(&project.password()), "the password is in the configuration:\n{config}");
    let config_file = project.path().join("prometheus.yml");
    std::fs::write(&config_file, &config).unwrap();

    let log = std::fs::File::create(project.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(common::prometheus_agent_flag())
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.agent.path={}", project.path().join("wal").display()))
            .arg(format!("--web.listen-address={target}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus on PATH (scripts/install-deps)"),
    );

    let series = project.wait_for_series(
        r#"up{job="prometheus",greenflow_run="20260101T000000Z-pcfg",greenflow_experiment="prometheus-config"}"#,
        Duration::from_secs(90),
    );
    assert_eq!(series[0]["metric"]["instance"], target.as_str(), "{series:?}");
    assert_eq!(series[0]["value"][1], "1", "Prometheus scraped itself: {series:?}");
}
