//! The drain check read off a real Prometheus agent writing through the real sink: a good password drains, a wrong
//! one (401: Prometheus drops the batches without retrying) shows as lossy.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Project, free_port};
use greenflow_runs::drain::{DrainState, QueueMetrics, drain_state, parse_queue_metrics};

struct Agent {
    child: std::process::Child,
    port: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(project: &Project, password: &str) -> Agent {
    let urls = project.urls();
    let dir = project.path().join(format!("agent-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw"), password).unwrap();
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: \
         ['127.0.0.1:{port}']\nremote_write:\n  - name: greenflow-sink\n    url: {}\n    basic_auth:\n      username: \
         greenflow\n      password_file: {}\n    queue_config:\n      batch_send_deadline: 1s\n",
        urls["remote_write_url"].as_str().unwrap(),
        dir.join("pw").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let child = std::process::Command::new("prometheus")
        .args([
            common::prometheus_agent_flag(),
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.agent.path={}", dir.join("wal").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Agent { child, port }
}

fn queue(agent: &Agent) -> Option<QueueMetrics> {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", agent.port)).ok()?.text().ok()?;
    parse_queue_metrics(&text, "greenflow-sink").ok()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn wait_for_state(agent: &Agent, at_start: &QueueMetrics, end: f64, want: fn(&DrainState) -> bool) -> DrainState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(metrics) = queue(agent) {
            let state = drain_state(at_start, &metrics, end, None);
            if want(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "drain state stayed {state:?} ({metrics:?})");
        }
        assert!(Instant::now() < deadline, "no queue metrics from the agent");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_good_password_drains_up_to_the_end() {
    let project = Project::new();
    project.sink_up();
    let agent = start_agent(&project, &project.password());
    let at_start = QueueMetrics::default();
    std::thread::sleep(Duration::from_secs(3));
    let end = now();
    let state = wait_for_state(&agent, &at_start, end, |s| *s == DrainState::Drained);
    assert_eq!(state, DrainState::Drained);
    let sent = queue(&agent).unwrap();
    assert!(sent.samples_sent > 0.0 && sent.highest_sent_timestamp >= end, "{sent:?}");
}

#[test]
fn a_wrong_password_shows_as_lossy() {
    let project = Project::new();
    project.sink_up();
    let agent = start_agent(&project, "not-the-password");
    let state = wait_for_state(&agent, &QueueMetrics::default(), now(), |s| matches!(s, DrainState::Lossy { .. }));
    let DrainState::Lossy { failed, .. } = state else { unreachable!() };
    assert!(failed > 0.0, "401s count as failed samples: {state:?}");
}
