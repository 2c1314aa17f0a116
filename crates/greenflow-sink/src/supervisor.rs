//! A small process supervisor, modelled on systemctl: start a set of long-running programs, restart a crashed one
//! with backoff, and stop them all so that no process is left behind.
//!
//! Each program runs in its own process group, so stopping it signals the whole group (grandchildren too): SIGTERM,
//! a grace period, then SIGKILL.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::SinkError;

/// How to run one program.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// A stable name (`victoria-metrics`, `caddy`, ...), used in logs and status.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables added to its environment.
    pub env: Vec<(OsString, OsString)>,
    /// Where its standard output and error are appended.
    pub log_file: PathBuf,
    /// How long it may take to stop after SIGTERM before it is killed.
    pub stop_grace: Duration,
}

/// The live state of one supervised program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// The program's name.
    pub name: String,
    /// Its pid (also its process group id) while it runs.
    pub pid: Option<u32>,
    /// How often it was restarted after exiting on its own.
    pub restarts: u32,
}

/// Restart delays: 1 s, doubling up to 30 s; back to 1 s after a run of a minute.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// A running set of supervised programs. Dropping it without [`Supervisor::stop`] leaves them running.
#[derive(Debug)]
pub struct Supervisor {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    states: Arc<Mutex<Vec<ProcessState>>>,
    changes: watch::Receiver<u64>,
}

impl Supervisor {
    /// Starts every program. Fails without leaving anything running if one cannot be spawned at all.
    pub async fn start(specs: Vec<ProcessSpec>) -> Result<Self, SinkError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (change_tx, changes) = watch::channel(0u64);
        let change_tx = Arc::new(change_tx);
        let states = Arc::new(Mutex::new(
            specs.iter().map(|s| ProcessState { name: s.name.clone(), pid: None, restarts: 0 }).collect::<Vec<_>>(),
        ));
        let mut tasks = JoinSet::new();
        let mut first_children = Vec::new();
        for spec in &specs {
            match spawn(spec) {
                Ok(child) => first_children.push(child),
                Err(err) => {
                    for mut child in first_children {
                        terminate(&mut child, Duration::from_secs(5)).await;
                    }
                    return Err(err);
                }
            }
        }
        for (index, (spec, child)) in specs.into_iter().zip(first_children).enumerate() {
            let supervised = Supervised {
                index,
                spec,
                states: Arc::clone(&states),
                changes: Arc::clone(&change_tx),
                shutdown: shutdown_rx.clone(),
            };
            tasks.spawn(supervised.run(child));
        }
        Ok(Self { shutdown, tasks, states, changes })
    }

    /// A snapshot of every program's state.
    pub fn states(&self) -> Vec<ProcessState> {
        self.states.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A shared handle on the states, for tasks that outlive a borrow of the supervisor.
    pub(crate) fn states_handle(&self) -> Arc<Mutex<Vec<ProcessState>>> {
        Arc::clone(&self.states)
    }

    /// A receiver that changes whenever a program starts or stops.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Stops every program (SIGTERM to its group, then SIGKILL after its grace period) and waits for all of them.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

struct Supervised {
    index: usize,
    spec: ProcessSpec,
    states: Arc<Mutex<Vec<ProcessState>>>,
    changes: Arc<watch::Sender<u64>>,
    shutdown: watch::Receiver<bool>,
}

impl Supervised {
    fn record(&self, update: impl FnOnce(&mut ProcessState)) {
        if let Ok(mut states) = self.states.lock() {
            update(&mut states[self.index]);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    async fn run(mut self, first: tokio::process::Child) {
        let mut child = Some(first);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut running = match child.take() {
                Some(c) => c,
                None => match spawn(&self.spec) {
                    Ok(c) => c,
                    Err(err) => {
                        tracing::error!(component = %self.spec.name, error = %err, "restart failed; retrying in {}s", backoff.as_secs());
                        if self.wait_or_shutdown(backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let pid = running.id();
            self.record(|s| s.pid = pid);
            let started = Instant::now();
            let mut shutdown = self.shutdown.clone();
            let exited = tokio::select! {
                status = running.wait() => Some(status),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(status) = exited else {
                terminate(&mut running, self.spec.stop_grace).await;
                self.record(|s| s.pid = None);
                tracing::debug!(component = %self.spec.name, "stopped");
                return;
            };
            // Whatever the program left in its group goes with it.
            if let Some(pid) = pid {
                signal_group(pid, Signal::SIGKILL);
            }
            self.record(|s| {
                s.pid = None;
                s.restarts += 1;
            });
            if started.elapsed() >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            tracing::warn!(component = %self.spec.name, %status, log = %self.spec.log_file.display(),
                "exited unexpectedly; restarting in {}s", backoff.as_secs());
            if self.wait_or_shutdown(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sleeps for `delay`; true if shutdown was asked meanwhile.
    async fn wait_or_shutdown(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = self.shutdown.wait_for(|stop| *stop) => true,
        }
    }
}

fn spawn(spec: &ProcessSpec) -> Result<tokio::process::Child, SinkError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .map_err(SinkError::io("open log file", &spec.log_file))?;
    let log_err = log.try_clone().map_err(SinkError::io("open log file", &spec.log_file))?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    stop_with_parent(&mut command);
    let child = command.spawn().map_err(|source| SinkError::Spawn {
        name: spec.name.clone(),
        program: spec.program.clone(),
        source,
    })?;
    tracing::debug!(component = %spec.name, pid = child.id(), "started");
    Ok(child)
}

/// Asks the kernel to send SIGTERM to the child if greenflow itself dies without stopping it (killed, or a panic),
/// so that a crash never leaves a sink component running unsupervised.
#[allow(unsafe_code)]
fn stop_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
    }
}

/// SIGTERM to the child's group, up to `grace` to exit, then SIGKILL to the group.
async fn terminate(child: &mut tokio::process::Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(pid, "did not stop within {}s; killing it", grace.as_secs());
    }
    signal_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Sends a signal to a process group; a group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}
