//! A small process supervisor, modelled on systemctl: start a set of long-running programs, restart a crashed one
//! with backoff, and stop them all so that no process is left behind.
//!
//! Each program runs in its own process group, so stopping it signals the whole group (grandchildren too): SIGTERM,
//! a grace period, then SIGKILL.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::SinkError;

/// How to run one program.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Set when it exited during start-up: it is then not restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<StartupFailure>,
}

/// A program that exited before the sink (or stand-in cluster) it belongs to was up: greenflow stops instead of
/// restarting it blindly, and shows why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupFailure {
    /// How it exited (`exit status: 3`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// Its log file.
    pub log: PathBuf,
    /// The last lines it wrote there in this start.
    pub last_lines: Vec<String>,
}

impl std::fmt::Display for StartupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; log `{}`", self.status, self.log.display())?;
        if self.last_lines.is_empty() {
            write!(f, " (empty)")
        } else {
            write!(f, ", last lines:")?;
            self.last_lines.iter().try_for_each(|line| write!(f, "\n    {line}"))
        }
    }
}

/// Restart delays: 1 s, doubling up to 30 s; back to 1 s after a run of a minute.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long after its first start an exit counts as a start-up failure, unless [`Supervisor::mark_started`] ended
/// the start-up earlier.
const STARTUP_WINDOW: Duration = Duration::from_secs(60);
/// The variables a component keeps from greenflow's environment; everything else is dropped.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
/// How many of a failed program's last log lines are shown.
const LOG_TAIL_LINES: usize = 12;

/// A running set of supervised programs. Dropping it without [`Supervisor::stop`] leaves them running.
#[derive(Debug)]
pub struct Supervisor {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    states: Arc<Mutex<Vec<ProcessState>>>,
    changes: watch::Receiver<u64>,
    change_tx: Arc<watch::Sender<u64>>,
    started: Arc<AtomicBool>,
}

impl Supervisor {
    /// Starts every program. Fails without leaving anything running if one cannot be spawned at all.
    pub async fn start(specs: Vec<ProcessSpec>) -> Result<Self, SinkError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (change_tx, changes) = watch::channel(0u64);
        let change_tx = Arc::new(change_tx);
        let states = Arc::new(Mutex::new(
            specs
                .iter()
                .map(|s| ProcessState { name: s.name.clone(), pid: None, restarts: 0, failed: None })
                .collect::<Vec<_>>(),
        ));
        let started = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut first_children = Vec::new();
        for spec in &specs {
            match spawn(spec) {
                Ok(child) => first_children.push(child),
                Err(err) => {
                    for (mut child, _) in first_children {
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
                started: Arc::clone(&started),
            };
            tasks.spawn(supervised.run(child));
        }
        Ok(Self { shutdown, tasks, states, changes, change_tx, started })
    }

    /// Ends the start-up: from now on a program that exits is restarted with backoff. Until then (or for
    /// a minute after the start) an exit is a start-up failure and the program is left stopped.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
        self.change_tx.send_modify(|n| *n += 1);
    }

    /// Whether [`Supervisor::mark_started`] was called, as a handle that outlives a borrow of the supervisor.
    pub(crate) fn started_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.started)
    }

    /// The first program that failed during start-up, with why.
    pub fn startup_failure(&self) -> Option<(String, StartupFailure)> {
        self.states().into_iter().find_map(|s| s.failed.map(|f| (s.name, f)))
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
    started: Arc<AtomicBool>,
}

impl Supervised {
    fn record(&self, update: impl FnOnce(&mut ProcessState)) {
        if let Ok(mut states) = self.states.lock() {
            update(&mut states[self.index]);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    async fn run(mut self, first: (tokio::process::Child, u64)) {
        let mut child = Some(first);
        let mut backoff = FIRST_BACKOFF;
        let first_start = Instant::now();
        loop {
            let (mut running, log_offset) = match child.take() {
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
            let _parent_watch = watch_parent(pid);
            self.record(|s| s.pid = pid);
            let run_began = Instant::now();
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
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            if !self.started.load(Ordering::SeqCst) && first_start.elapsed() < STARTUP_WINDOW {
                let failure = StartupFailure {
                    status,
                    log: self.spec.log_file.clone(),
                    last_lines: log_tail(&self.spec.log_file, log_offset),
                };
                tracing::error!(component = %self.spec.name, "exited during start-up: {failure}");
                self.record(|s| {
                    s.pid = None;
                    s.failed = Some(failure);
                });
                return;
            }
            self.record(|s| {
                s.pid = None;
                s.restarts += 1;
            });
            if run_began.elapsed() >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
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

/// The last lines a program wrote to its log since byte `offset` (where this start began).
fn log_tail(path: &std::path::Path, offset: u64) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..]
        .iter()
        .map(|line| {
            let line = line.trim_end();
            match line.char_indices().nth(400) {
                Some((cut, _)) => format!("{}...", &line[..cut]),
                None => line.to_owned(),
            }
        })
        .collect()
}

/// Starts one program; returns it with the length its log had before (where this start's lines begin).
fn spawn(spec: &ProcessSpec) -> Result<(tokio::process::Child, u64), SinkError> {
    let log_offset = std::fs::metadata(&spec.log_file).map(|m| m.len()).unwrap_or(0);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .map_err(SinkError::io("open log file", &spec.log_file))?;
    let log_err = log.try_clone().map_err(SinkError::io("open log file", &spec.log_file))?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        // A cleared environment plus what every program needs and what this one is given: no secret of
        // greenflow's own environment (GREENFLOW_SINK_PASSWORD, TS_AUTHKEY, ...) reaches a component.
        .env_clear()
        .envs(INHERITED_ENV.iter().filter_map(|name| std::env::var_os(name).map(|value| (*name, value))))
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
    Ok((child, log_offset))
}

/// Asks the kernel to send SIGTERM to the child if greenflow itself dies without stopping it (killed, or a panic),
/// so that a crash never leaves a sink component running unsupervised.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn stop_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
    }
}

/// Elsewhere (macOS has no parent-death signal) a [`ParentWatch`] started after the spawn does the same job.
#[cfg(not(target_os = "linux"))]
fn stop_with_parent(_command: &mut tokio::process::Command) {}

/// The portable stand-in for Linux's parent-death signal: a small `sh` loop in a process group of its own that
/// checks once a second whether greenflow still lives and, once it does not, sends SIGTERM to the component's
/// process group. It is stopped when the component stops normally, so it never outlives its component.
#[derive(Debug)]
pub struct ParentWatch {
    watcher: std::process::Child,
}

impl ParentWatch {
    /// Watches process `parent` (greenflow: [`std::process::id`]) on behalf of the process group `pgid`.
    pub fn start(parent: u32, pgid: u32) -> std::io::Result<Self> {
        let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -s TERM -- "-$2" 2>/dev/null"#;
        let watcher = std::process::Command::new("/bin/sh")
            .args(["-c", script, "greenflow-parent-watch"])
            .arg(parent.to_string())
            .arg(pgid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self { watcher })
    }
}

impl Drop for ParentWatch {
    fn drop(&mut self) {
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}

/// Starts the [`ParentWatch`] where the kernel offers no parent-death signal.
fn watch_parent(pid: Option<u32>) -> Option<ParentWatch> {
    if cfg!(target_os = "linux") {
        return None;
    }
    let pid = pid?;
    ParentWatch::start(std::process::id(), pid)
        .map_err(
            |err| tracing::warn!(pid, error = %err, "cannot watch for greenflow's death on behalf of the component"),
        )
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_in_own_group(program: &str, args: &[&str]) -> std::process::Child {
        std::process::Command::new(program).args(args).process_group(0).spawn().unwrap()
    }

    fn exited_within(child: &mut std::process::Child, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    #[test]
    fn parent_watch_stops_the_group_once_the_parent_is_gone() {
        let mut parent = spawn_in_own_group("sleep", &["60"]);
        let mut component = spawn_in_own_group("sleep", &["60"]);
        let _watch = ParentWatch::start(parent.id(), component.id()).unwrap();
        assert!(!exited_within(&mut component, Duration::from_millis(1500)), "stopped while the parent lives");
        parent.kill().unwrap();
        parent.wait().unwrap();
        assert!(exited_within(&mut component, Duration::from_secs(5)), "the component outlived its parent");
    }

    #[test]
    fn a_dropped_parent_watch_leaves_the_group_alone() {
        let mut parent = spawn_in_own_group("sleep", &["60"]);
        let mut component = spawn_in_own_group("sleep", &["60"]);
        drop(ParentWatch::start(parent.id(), component.id()).unwrap());
        parent.kill().unwrap();
        parent.wait().unwrap();
        assert!(!exited_within(&mut component, Duration::from_millis(2500)), "a stopped watch still signalled");
        component.kill().unwrap();
        component.wait().unwrap();
    }

    fn shell(dir: &std::path::Path, name: &str, script: &str) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            log_file: dir.join(format!("{name}.log")),
            stop_grace: Duration::from_secs(2),
        }
    }

    async fn wait_for(supervisor: &Supervisor, what: impl Fn(&[ProcessState]) -> bool) -> Vec<ProcessState> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let states = supervisor.states();
            if what(&states) || Instant::now() >= deadline {
                return states;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn an_exit_during_start_up_is_reported_not_restarted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.log"), "a line of an earlier start\n").unwrap();
        let supervisor = Supervisor::start(vec![
            shell(dir.path(), "steady", "sleep 30"),
            shell(dir.path(), "broken", "echo 'Error parsing command line: unknown flag' >&2; exit 3"),
        ])
        .await
        .unwrap();
        let states = wait_for(&supervisor, |s| s[1].failed.is_some()).await;
        let (name, failure) = supervisor.startup_failure().expect("a start-up failure");
        assert_eq!(name, "broken");
        assert!(failure.status.contains('3'), "{failure}");
        assert_eq!(failure.last_lines, vec!["Error parsing command line: unknown flag".to_owned()]);
        assert_eq!(states[1].restarts, 0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(supervisor.states()[1].pid, None, "restarted after a start-up failure");
        assert!(supervisor.states()[0].pid.is_some(), "the other program keeps running until stopped");
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn after_start_up_a_crash_is_restarted_with_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::start(vec![shell(dir.path(), "flaky", "sleep 0.3; exit 1")]).await.unwrap();
        supervisor.mark_started();
        let states = wait_for(&supervisor, |s| s[0].restarts >= 1).await;
        assert!(states[0].restarts >= 1, "{states:?}");
        assert!(supervisor.startup_failure().is_none());
        supervisor.stop().await;
    }
}
