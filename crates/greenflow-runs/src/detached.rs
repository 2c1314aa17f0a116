//! The local stand-in cluster in a background supervisor of its own, so that it outlives the greenflow that started
//! it: a drain that timed out leaves the agent running with its queue, and after greenflow is killed the agent goes
//! on writing; `greenflow runs recover` then finds it, drains it and stops it, as it does with the cluster's
//! Prometheus.
//!
//! The run writes the plan (`plan.json`) into the run's directory and starts greenflow's hidden `local-cluster`
//! command on it ([`serve`]), which publishes `cluster.json` ([`DetachedState`]) and stops on SIGTERM.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use greenflow_sink::supervisor::{INHERITED_ENV, ProcessState};
use greenflow_sink::{write_private, write_public};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::local::{LocalCluster, LocalClusterPlan};

const PLAN_FILE: &str = "plan.json";
const STATE_FILE: &str = "cluster.json";
const SUPERVISOR_LOG: &str = "supervisor.log";
/// How long a stop may take: the agent's flush deadline and grace, and some.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What a background local cluster publishes about itself (`cluster.json` in its directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedState {
    /// The background supervisor's pid.
    pub supervisor_pid: u32,
    /// The agent's address (`127.0.0.1:PORT`).
    pub prometheus_listen: String,
    /// The agent answered `/-/ready`: the start-up is over.
    pub ready: bool,
    /// Each program's state (a start-up failure included).
    pub components: Vec<ProcessState>,
}

impl DetachedState {
    /// The program that exited during start-up, if one did, and why.
    pub fn startup_failure(&self) -> Option<String> {
        self.components
            .iter()
            .find_map(|c| c.failed.as_ref().map(|f| format!("{} exited during start-up ({f})", c.name)))
    }
}

/// Reads the state a background local cluster published in `dir`, if it did.
pub fn read_state(dir: &Path) -> Option<DetachedState> {
    serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
}

/// Whether the background supervisor of `state` (in `dir`) still runs: its pid lives and its command line names
/// `dir` (a reused pid does not count).
pub fn is_alive(dir: &Path, state: &DetachedState) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", state.supervisor_pid)) else {
        return cfg!(not(target_os = "linux")) && kill(pid(state.supervisor_pid), None).is_ok();
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == needle)
}

fn pid(value: u32) -> Pid {
    Pid::from_raw(i32::try_from(value).unwrap_or(i32::MAX))
}

/// A local cluster running in its background supervisor.
#[derive(Debug)]
pub struct DetachedCluster {
    /// Its directory.
    pub dir: PathBuf,
    /// What it published.
    pub state: DetachedState,
    /// The supervisor, when this process started it (to reap it).
    child: Option<Child>,
}

impl DetachedCluster {
    /// Starts `plan` in a background supervisor: `launcher` (greenflow's executable and the arguments of its hidden
    /// `local-cluster` command) with the plan's directory appended, in a process group of its own, with a cleared
    /// environment. Waits until the agent is ready, at most `timeout`; `progress` hears what it waits for.
    pub async fn start(
        plan: &LocalClusterPlan,
        launcher: &[OsString],
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Self, RunError> {
        let dir = plan.dir.clone();
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
        let text = serde_json::to_string_pretty(plan).map_err(|e| failure(format!("cannot encode the plan: {e}")))?;
        write_public(&dir.join(PLAN_FILE), &text)?;
        let log_path = dir.join("logs").join(SUPERVISOR_LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| failure(format!("cannot open `{}`: {e}", log_path.display())))?;
        let (program, args) =
            launcher.split_first().ok_or_else(|| failure("no command to start the local cluster with".into()))?;
        let mut command = std::process::Command::new(program);
        command.args(args).arg(&dir).env_clear().stdin(Stdio::null());
        for key in INHERITED_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.stdout(log.try_clone().map_err(|e| failure(e.to_string()))?).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child =
            command.spawn().map_err(|e| failure(format!("cannot start `{}`: {e}", Path::new(program).display())))?;

        let deadline = Instant::now() + timeout;
        loop {
            let state = read_state(&dir);
            if let Some(status) = child.try_wait().map_err(|e| failure(e.to_string()))? {
                let why = state.as_ref().and_then(DetachedState::startup_failure).unwrap_or_else(|| {
                    format!(
                        "its supervisor exited ({status}); `{}` ends with:\n{}",
                        log_path.display(),
                        greenflow_sink::tail_lines(&log_path, 10)
                    )
                });
                return Err(failure(format!("{why}; greenflow stopped instead of restarting it")));
            }
            match state {
                Some(state) if state.ready => return Ok(Self { dir, state, child: Some(child) }),
                Some(state) => progress(&format!("waiting for the Prometheus agent on {}", state.prometheus_listen)),
                None => progress("waiting for the local cluster's supervisor"),
            }
            if Instant::now() >= deadline {
                let mut cluster = Self {
                    dir,
                    state: DetachedState {
                        supervisor_pid: child.id(),
                        prometheus_listen: plan.prometheus_listen.clone(),
                        ready: false,
                        components: Vec::new(),
                    },
                    child: Some(child),
                };
                cluster.stop().await;
                return Err(crate::backend::BackendError::NotReady {
                    timeout,
                    detail: "the Prometheus agent did not answer /-/ready".into(),
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The background cluster of the run whose directory is `dir`, if it still runs.
    pub fn find(dir: &Path) -> Option<Self> {
        let state = read_state(dir)?;
        is_alive(dir, &state).then(|| Self { dir: dir.to_owned(), state, child: None })
    }

    /// Stops it: SIGTERM to the supervisor, which stops the agent (flushing its queue for at most its flush
    /// deadline) and node-exporter; SIGKILL after 20 s.
    pub async fn stop(&mut self) {
        let target = pid(self.state.supervisor_pid);
        let _ = kill(target, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self.exited() {
            if Instant::now() >= deadline {
                tracing::warn!(pid = self.state.supervisor_pid, "the local cluster did not stop in time; killing it");
                let _ = kill(target, Signal::SIGKILL);
                if let Some(child) = self.child.as_mut() {
                    let _ = child.wait();
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => !is_alive(&self.dir, &self.state),
        }
    }
}

fn failure(detail: String) -> RunError {
    RunError::LocalCluster { detail }
}

/// Runs the plan saved in `dir` until `stop` resolves, publishing its state in `dir`: the body of greenflow's hidden
/// `local-cluster` command. A program that exits during start-up ends it with an error (the state keeps why).
pub async fn serve(dir: &Path, stop: impl Future<Output = ()>) -> Result<(), RunError> {
    let text = std::fs::read(dir.join(PLAN_FILE))
        .map_err(|e| failure(format!("cannot read `{}`: {e}", dir.join(PLAN_FILE).display())))?;
    let plan: LocalClusterPlan = serde_json::from_slice(&text)
        .map_err(|e| failure(format!("cannot read `{}`: {e}", dir.join(PLAN_FILE).display())))?;
    let listen = plan.prometheus_listen.clone();
    let cluster = LocalCluster::start(plan).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let ready_url = format!("http://{listen}/-/ready");
    let mut changes = cluster.changes();
    let mut published: Option<DetachedState> = None;
    let mut ready = false;
    let mut stop = std::pin::pin!(stop);
    let outcome = loop {
        let state = DetachedState {
            supervisor_pid: std::process::id(),
            prometheus_listen: listen.clone(),
            ready,
            components: cluster.states(),
        };
        if published.as_ref() != Some(&state) {
            let text = serde_json::to_string_pretty(&state).unwrap_or_default();
            write_private(&dir.join(STATE_FILE), &text)?;
            published = Some(state.clone());
        }
        if let Some(why) = state.startup_failure() {
            break Err(failure(why));
        }
        tokio::select! {
            () = &mut stop => break Ok(()),
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(200)), if !ready => {
                if http.get(&ready_url).send().await.is_ok_and(|r| r.status().is_success()) {
                    cluster.mark_started();
                    ready = true;
                }
            }
        }
    };
    cluster.stop().await;
    if outcome.is_ok() {
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
        let _ = std::fs::remove_file(dir.join(PLAN_FILE));
    }
    outcome
}
