//! A running sink: the lock that makes it unique, the state file that `sink status` reads, health checks, and
//! stopping it (in-process or, for a detached sink, through its pid).

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use greenflow_config::{Secret, Settings};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client::SinkClient;
use crate::error::SinkError;
use crate::files::{ensure_dir, write_public};
use crate::layout::{ComponentName, GrafanaAbsence, PreparedSink, SinkUrls, prepare};
use crate::supervisor::{Supervisor, signal_group};

/// The version of the state file format; a newer one is read but never rewritten.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// What a running sink publishes about itself in `<state>/sink/sink.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkState {
    /// Format version of this file.
    pub format_version: u32,
    /// The pid of the greenflow process that supervises the sink.
    pub supervisor_pid: u32,
    /// When the sink started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Whether it runs detached (`sink up --detach`).
    pub detached: bool,
    /// The components.
    pub components: Vec<ComponentState>,
    /// Why Grafana does not run, if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_absent: Option<GrafanaAbsence>,
    /// Loopback URLs.
    pub urls: SinkUrls,
    /// Set once the supervisor saw every component healthy: from then on a crash is restarted, not fatal.
    #[serde(default)]
    pub ready: bool,
}

/// One component as the state file records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentState {
    /// Which component.
    pub name: ComponentName,
    /// Its pid (and process group), while it runs.
    pub pid: Option<u32>,
    /// Its version, when known.
    pub version: Option<String>,
    /// Where it listens.
    pub listen: String,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Its log file.
    pub log: PathBuf,
}

/// An exclusive lock on the sink's state directory, held for as long as the sink runs.
#[derive(Debug)]
pub struct SinkLock {
    _file: File,
}

fn lock_path(settings: &Settings) -> PathBuf {
    settings.paths.sink_state_dir().join("sink.lock")
}

fn state_path(settings: &Settings) -> PathBuf {
    settings.paths.sink_state_dir().join("sink.json")
}

impl SinkLock {
    /// Takes the lock and writes this process' pid into it; fails with the holder's pid if the sink runs.
    ///
    /// Other greenflow processes probe the lock (see [`running_supervisor`]) by taking it for an instant, so a
    /// failed attempt is retried for a moment before the sink is declared running.
    pub fn acquire(settings: &Settings) -> Result<Self, SinkError> {
        let path = lock_path(settings);
        let mut file = open_lock(&path)?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while file.try_lock().is_err() {
            if Instant::now() >= deadline {
                return Err(SinkError::AlreadyRunning { pid: read_pid(&mut file).unwrap_or(0) });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        file.set_len(0).map_err(SinkError::io("write", &path))?;
        file.rewind().map_err(SinkError::io("write", &path))?;
        write!(file, "{}", std::process::id()).map_err(SinkError::io("write", &path))?;
        Ok(Self { _file: file })
    }
}

fn open_lock(path: &Path) -> Result<File, SinkError> {
    ensure_dir(path.parent().unwrap_or(Path::new("/")))?;
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(SinkError::io("open", path))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The pid of the process holding the sink, if one does. Probes the lock for an instant and never writes to it.
pub fn running_supervisor(settings: &Settings) -> Option<u32> {
    let path = lock_path(settings);
    if !path.exists() {
        return None;
    }
    let mut file = fs::OpenOptions::new().read(true).open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(_) => Some(read_pid(&mut file).unwrap_or(0)),
    }
}

/// True when something answers as the sink on the configured ports although no greenflow process supervises it:
/// the services of the NixOS or home-manager module, or a sink started by hand. VictoriaMetrics' `/health` or any
/// HTTP answer of Caddy's loopback site counts.
pub async fn unsupervised_sink_answers(settings: &Settings) -> bool {
    let sink = &settings.config.sink;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().unwrap_or_default();
    let vm = format!("http://127.0.0.1:{}/health", sink.victoria_metrics.port);
    let caddy = format!("http://127.0.0.1:{}/vm/health", sink.http_port);
    let (vm, caddy) = tokio::join!(http.get(&vm).send(), http.get(&caddy).send());
    vm.is_ok_and(|r| r.status().is_success()) || caddy.is_ok()
}

/// Who runs the sink, if anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkPresence {
    /// A greenflow process supervises it (`sink up`, `demo`), with this pid.
    Supervised(u32),
    /// It answers on the configured ports, run by something else (a service manager).
    Unsupervised,
    /// Nothing runs.
    Absent,
}

/// Finds the running sink, whoever started it.
pub async fn sink_presence(settings: &Settings) -> SinkPresence {
    if let Some(pid) = running_supervisor(settings) {
        return SinkPresence::Supervised(pid);
    }
    if unsupervised_sink_answers(settings).await { SinkPresence::Unsupervised } else { SinkPresence::Absent }
}

/// The state file of the running sink, if it runs.
pub fn read_state(settings: &Settings) -> Option<SinkState> {
    running_supervisor(settings)?;
    let text = fs::read_to_string(state_path(settings)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A sink started by this process.
#[derive(Debug)]
pub struct RunningSink {
    _lock: SinkLock,
    supervisor: Supervisor,
    prepared: PreparedSink,
    state: SinkState,
    state_path: PathBuf,
    publisher: tokio::task::JoinHandle<()>,
    funnel: Option<crate::tailnet::Funnel>,
}

impl RunningSink {
    /// Takes the lock, prepares every file and starts the components. Nothing runs if a check fails.
    pub async fn start(settings: &Settings, detached: bool) -> Result<Self, SinkError> {
        // The checks that write nothing come first, so that a refusal leaves no directory behind.
        if running_supervisor(settings).is_none() {
            crate::layout::preflight(settings)?;
        }
        let lock = SinkLock::acquire(settings)?;
        let prepared = prepare(settings)?;
        check_funnel_password(settings)?;
        let supervisor = Supervisor::start(prepared.components.iter().map(|c| c.spec.clone()).collect()).await?;
        let funnel = match publish_funnel(settings) {
            Ok(funnel) => funnel,
            Err(err) => {
                supervisor.stop().await;
                return Err(err);
            }
        };
        let state = SinkState {
            format_version: STATE_FORMAT_VERSION,
            supervisor_pid: std::process::id(),
            started_at: OffsetDateTime::now_utc(),
            detached,
            components: prepared
                .components
                .iter()
                .map(|c| ComponentState {
                    name: c.name,
                    pid: None,
                    version: c.version.clone(),
                    listen: c.listen.clone(),
                    restarts: 0,
                    log: c.spec.log_file.clone(),
                })
                .collect(),
            grafana_absent: prepared.grafana_absent.clone(),
            urls: prepared.urls.clone(),
            ready: false,
        };
        let state_path = state_path(settings);
        // One task writes the state file: now, and after every start or exit of a component.
        let publisher = tokio::spawn(publish_state(
            supervisor.changes(),
            supervisor_states(&supervisor),
            supervisor.started_handle(),
            state.clone(),
            state_path.clone(),
        ));
        Ok(Self { _lock: lock, supervisor, prepared, state, state_path, publisher, funnel })
    }

    /// What was started, and how.
    pub fn prepared(&self) -> &PreparedSink {
        &self.prepared
    }

    /// The published state.
    pub fn state(&self) -> SinkState {
        let mut state = self.state.clone();
        state.ready = self.supervisor.started_handle().load(std::sync::atomic::Ordering::SeqCst);
        for (component, process) in state.components.iter_mut().zip(self.supervisor.states()) {
            component.pid = process.pid;
            component.restarts = process.restarts;
        }
        state
    }

    /// Waits until every component answers its health check, calling `progress` with the ones still waited for.
    pub async fn wait_healthy(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(&[ComponentName]),
    ) -> Result<(), SinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((name, failure)) = self.supervisor.startup_failure() {
                return Err(SinkError::StartupFailed { name, failure });
            }
            let health = check_health(&self.state(), &self.prepared.username, Some(&self.prepared.password)).await;
            if health.is_ok() {
                self.supervisor.mark_started();
                return Ok(());
            }
            progress(&health.waiting());
            if Instant::now() >= deadline {
                return Err(SinkError::NotHealthy {
                    seconds: timeout.as_secs(),
                    detail: health.problems(),
                    logs: self.prepared.logs_dir.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every component and removes the state file; the lock is released last.
    pub async fn stop(self) {
        if let Some(Err(err)) = self.funnel.as_ref().map(crate::tailnet::Funnel::unpublish) {
            tracing::warn!(%err, "the Funnel stays published: run `tailscale funnel reset`");
        }
        // Wait for the publisher to be gone: a write it had begun must not recreate the file removed below.
        self.publisher.abort();
        let _ = self.publisher.await;
        self.supervisor.stop().await;
        let _ = fs::remove_file(&self.state_path);
    }
}

/// For `cluster.reach: funnel`, refuses a writer's password that greenflow did not generate at full strength: on the
/// internet it is the only guard.
fn check_funnel_password(settings: &Settings) -> Result<(), SinkError> {
    if !settings.config.cluster.funnel() {
        return Ok(());
    }
    let Some(public) = settings.public_address()? else { return Ok(()) };
    let writer = crate::layout::writer_password(settings)?;
    if writer.expose().chars().count() < 32 {
        return Err(SinkError::Tailnet {
            host: public.host.clone(),
            detail: format!(
                "cluster.reach `funnel` publishes the sink on the internet, guarded by the writer's password alone, \
                 and {} holds fewer than the 32 random characters greenflow generates: delete it to have one \
                 generated (then run `greenflow cluster install` again)",
                crate::layout::writer_password_file(settings).display()
            ),
        });
    }
    Ok(())
}

/// For `cluster.reach: funnel`, publishes the write-only site with Tailscale Funnel under the public name.
fn publish_funnel(settings: &Settings) -> Result<Option<crate::tailnet::Funnel>, SinkError> {
    if !settings.config.cluster.funnel() {
        return Ok(None);
    }
    let Some(public) = settings.public_address()? else { return Ok(None) };
    if !public.is_tailnet() || public.scheme != "https" {
        return Err(SinkError::Tailnet {
            host: public.host.clone(),
            detail: "cluster.reach `funnel` publishes the sink under this machine's tailnet name: set \
                     sink.public_host to it (e.g. laptop.tail1234.ts.net), or choose another cluster.reach"
                .into(),
        });
    }
    let path = settings.env.get("PATH").unwrap_or_default();
    crate::tailnet::Funnel::publish(&public.host, public.port.unwrap_or(443), settings.config.sink.funnel_port, path)
        .map(Some)
}

fn supervisor_states(supervisor: &Supervisor) -> impl Fn() -> Vec<crate::supervisor::ProcessState> + Send + 'static {
    let snapshot = supervisor.states_handle();
    move || snapshot.lock().map(|s| s.clone()).unwrap_or_default()
}

async fn publish_state(
    mut changes: tokio::sync::watch::Receiver<u64>,
    states: impl Fn() -> Vec<crate::supervisor::ProcessState>,
    started: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut state: SinkState,
    path: PathBuf,
) {
    loop {
        changes.borrow_and_update();
        state.ready = started.load(std::sync::atomic::Ordering::SeqCst);
        for (component, process) in state.components.iter_mut().zip(states()) {
            component.pid = process.pid;
            component.restarts = process.restarts;
        }
        if let Err(err) = write_public(&path, &serde_json::to_string_pretty(&state).unwrap_or_default()) {
            tracing::warn!(error = %err, "cannot publish the sink's state");
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The outcome of one round of health checks.
#[derive(Debug)]
pub struct Health(Vec<(ComponentName, Result<(), SinkError>)>);

impl Health {
    /// Each component's result.
    pub fn entries(&self) -> &[(ComponentName, Result<(), SinkError>)] {
        &self.0
    }

    /// True when every component answered.
    pub fn is_ok(&self) -> bool {
        self.0.iter().all(|(_, result)| result.is_ok())
    }

    /// The components that did not answer.
    pub fn waiting(&self) -> Vec<ComponentName> {
        self.0.iter().filter(|(_, result)| result.is_err()).map(|(name, _)| *name).collect()
    }

    /// What is wrong, one `component: reason` per failing component.
    pub fn problems(&self) -> String {
        self.0
            .iter()
            .filter_map(|(name, result)| result.as_ref().err().map(|e| format!("{}: {e}", name.as_str())))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Each component's health: VictoriaMetrics' `/health`, the whole authenticated path through Caddy, Grafana's
/// `/api/health`. A component without a process is not asked.
pub async fn check_health(state: &SinkState, username: &str, password: Option<&Secret>) -> Health {
    let mut results = Vec::new();
    for component in &state.components {
        let result = if component.pid.is_none() {
            Err(SinkError::Answer {
                what: component.name.as_str().into(),
                url: component.listen.clone(),
                detail: "not running".into(),
            })
        } else {
            probe_component(component.name, &component.listen, &state.urls, username, password).await
        };
        results.push((component.name, result));
    }
    Health(results)
}

/// One component's health check, whoever runs it. Caddy's is the authenticated path to VictoriaMetrics; without the
/// password (another shell, say) it is that Caddy answers the path and asks for credentials (401).
pub async fn probe_component(
    name: ComponentName,
    listen: &str,
    urls: &SinkUrls,
    username: &str,
    password: Option<&Secret>,
) -> Result<(), SinkError> {
    match name {
        ComponentName::VictoriaMetrics => {
            let vm = SinkClient::new(format!("http://{listen}"), None);
            vm.health().await?;
            match vm.read_only_paths().await {
                Ok(paths) if !paths.is_empty() => Err(SinkError::Answer {
                    what: "victoria-metrics".into(),
                    url: format!("http://{listen}"),
                    detail: format!(
                        "read-only: the disk under `{}` is (nearly) full, below -storage.minFreeDiskSpaceBytes; every \
                         write is refused until space is freed",
                        paths.join("`, `")
                    ),
                }),
                _ => Ok(()),
            }
        }
        ComponentName::Caddy => match password {
            Some(password) => {
                SinkClient::new(urls.query_url.clone(), Some((username.to_owned(), password.clone()))).health().await
            }
            None => match SinkClient::new(urls.query_url.clone(), None).health().await {
                Err(SinkError::Status { status: 401, .. }) => Ok(()),
                Ok(()) => Err(SinkError::Answer {
                    what: "caddy".into(),
                    url: urls.query_url.clone(),
                    detail: "answered without credentials: its basic auth is not in place".into(),
                }),
                Err(other) => Err(other),
            },
        },
        ComponentName::Grafana => SinkClient::new(format!("http://{listen}/api"), None).health().await,
    }
}

/// What `sink down` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nothing was running.
    NotRunning,
    /// The supervisor stopped its components and exited.
    Stopped,
    /// The supervisor did not exit in time and was killed, with every component's process group.
    Killed,
}

/// Stops a sink run by another greenflow process: SIGTERM to its supervisor, then (after `timeout`) SIGKILL to it
/// and to every component group it recorded.
pub async fn stop_running(settings: &Settings, timeout: Duration) -> Result<StopOutcome, SinkError> {
    let Some(pid) = running_supervisor(settings) else {
        let _ = fs::remove_file(state_path(settings));
        return Ok(StopOutcome::NotRunning);
    };
    let state = read_state(settings);
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if running_supervisor(settings).is_none() {
            return Ok(StopOutcome::Stopped);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = nix::sys::signal::kill(target, Signal::SIGKILL);
    for component in state.iter().flat_map(|s| &s.components) {
        if let Some(pgid) = component.pid {
            signal_group(pgid, Signal::SIGKILL);
        }
    }
    let _ = fs::remove_file(state_path(settings));
    Ok(StopOutcome::Killed)
}
