//! `greenflow run` and `greenflow runs recover`: the run lifecycle on the chosen back-end, and the exit status that
//! tells scripts how it went.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_runs::lifecycle::{self, RunContext};
use greenflow_runs::{
    BackendKind, ClusterBackend, Interrupts, KubeBackend, LocalBackend, RunRecord, RunRequest, RunStatus, RunStore,
    Workload,
};
use greenflow_sink::{SinkClient, loopback_urls, running_supervisor, sink_password, writer_password};

use crate::cli::{BackendChoice, RunArgs, RunsRecoverArgs};
use crate::exit;
use crate::signals::StopRequests;
use crate::ui::{TerminalReporter, human_duration};

/// The sink as one address sees it, with both credentials: the owner's (greenflow's queries, markers, probe) and
/// the writer's (what the cluster holds).
pub struct SinkAccess {
    /// As the owner.
    pub owner: SinkClient,
    /// As the writer.
    pub writer: SinkClient,
}

impl SinkAccess {
    /// Both clients below one base URL (`.../vm`).
    fn under(settings: &Settings, base: String) -> anyhow::Result<Self> {
        let owner = (settings.config.sink.username.clone(), sink_password(settings)?);
        let writer = (settings.config.sink.writer_username(), writer_password(settings)?);
        Ok(Self { owner: SinkClient::new(base.clone(), Some(owner)), writer: SinkClient::new(base, Some(writer)) })
    }
}

/// The local back-end and the sink as it reaches it (loopback); its agent writes with the writer's credential.
pub fn local_backend(settings: &Settings) -> anyhow::Result<(LocalBackend, SinkAccess)> {
    let urls = loopback_urls(settings);
    let backend = LocalBackend::new(
        settings,
        &urls.remote_write_url,
        &settings.config.sink.writer_username(),
        writer_password(settings)?,
        local_cluster_launcher()?,
    );
    Ok((backend, SinkAccess::under(settings, urls.query_url)?))
}

/// How the local back-end starts its background supervisor: this executable's hidden `local-cluster` command.
pub fn local_cluster_launcher() -> anyhow::Result<Vec<std::ffi::OsString>> {
    let exe = std::env::current_exe().context("cannot find the greenflow executable")?;
    Ok(vec![exe.into_os_string(), "local-cluster".into()])
}

/// `greenflow local-cluster DIR` (internal): runs a run's stand-in cluster until SIGTERM or SIGINT; SIGHUP is
/// ignored, as it outlives the terminal of the run that started it.
pub async fn serve_local_cluster(args: &crate::cli::LocalClusterArgs) -> anyhow::Result<u8> {
    let mut stop = StopRequests::install(true)?;
    greenflow_runs::detached::serve(&args.dir, stop.wait(1)).await?;
    Ok(exit::OK)
}

/// The kube back-end (kubeconfig, `cluster.context`; connecting sends nothing yet) and the sink as the cluster
/// reaches it.
async fn kube_backend(settings: &Settings) -> anyhow::Result<(KubeBackend, SinkAccess)> {
    let sink = public_sink(settings)?;
    Ok((KubeBackend::new(greenflow_cluster::connect(settings).await?), sink))
}

/// The sink as the cluster reaches it: the public address, authenticated.
fn public_sink(settings: &Settings) -> anyhow::Result<SinkAccess> {
    let public = settings
        .public_address()?
        .context("the cluster needs the sink's public address: set sink.public_host (or NODENAME and TAILSCALE_DOMAIN, or EXPERIMENT_STORAGE_URL)")?;
    let base = public
        .remote_write_url
        .strip_suffix("/api/v1/write")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/vm", public.base_url()));
    SinkAccess::under(settings, base)
}

/// The back-end `--backend` names, or the default: `kube` when a kubeconfig is found, else `local`.
fn choose(settings: &Settings, choice: Option<BackendChoice>) -> BackendKind {
    match choice {
        Some(BackendChoice::Kube) => BackendKind::Kube,
        Some(BackendChoice::Local) => BackendKind::Local,
        None => {
            let kubeconfig = settings.env.get("KUBECONFIG").is_some_and(|v| !v.is_empty())
                || settings
                    .env
                    .get("HOME")
                    .is_some_and(|home| std::path::Path::new(home).join(".kube/config").is_file());
            if kubeconfig { BackendKind::Kube } else { BackendKind::Local }
        }
    }
}

/// The request every run command shares, from settings: timeouts, and the scrape interval of `kind`'s Prometheus.
pub fn request(settings: &Settings, name: &str, workload: Workload, kind: BackendKind) -> RunRequest {
    let run = &settings.config.run;
    RunRequest {
        name: name.to_owned(),
        live_counts: !matches!(workload, Workload::Command(_)),
        workload,
        scrape_interval: match kind {
            BackendKind::Kube => settings.config.cluster.scrape_interval,
            BackendKind::Local => settings.config.local.scrape_interval,
        },
        ready_timeout: run.ready_timeout,
        first_sample_timeout: run.first_sample_timeout,
        drain_timeout: run.drain_timeout,
        force: false,
        versions: recorded_versions(settings),
    }
}

/// greenflow's version and, when the sink has run, the VictoriaMetrics that takes the run's samples in (which a
/// run's archive names as its source).
fn recorded_versions(settings: &Settings) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::from([("greenflow".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]);
    if let Some(writer) = greenflow_sink::vm_data::last_writer(&settings.paths.victoria_metrics_data()) {
        versions.insert("victoria-metrics".to_owned(), writer.release.describe());
    }
    versions
}

/// Makes a run on `backend` and prints its outcome; the exit status says how it went.
pub async fn drive<B: ClusterBackend>(
    settings: &Settings,
    backend: &mut B,
    sink: SinkAccess,
    request: &RunRequest,
) -> anyhow::Result<u8> {
    on_terminal(settings, sink, async |ctx| lifecycle::run(backend, ctx, request).await).await
}

/// Runs a lifecycle step with progress on the terminal and Ctrl-C counted, then prints the record's outcome.
async fn on_terminal(
    settings: &Settings,
    sink: SinkAccess,
    step: impl AsyncFnOnce(&mut RunContext<'_>) -> Result<RunRecord, greenflow_runs::RunError>,
) -> anyhow::Result<u8> {
    let stop = StopRequests::install(false)?;
    let reporter = TerminalReporter::default();
    let mut ctx = RunContext {
        sink: sink.owner,
        writer: Some(sink.writer),
        // The sink is on this machine: its VictoriaMetrics can say why writes do not land.
        storage: Some(SinkClient::new(
            format!("http://127.0.0.1:{}", settings.config.sink.victoria_metrics.port),
            None,
        )),
        store: RunStore::new(settings.paths.runs_dir()),
        reporter: &reporter,
        interrupts: Interrupts::new(stop.receiver()),
    };
    let outcome = step(&mut ctx).await;
    reporter.finish();
    // A run whose final record could not be written (a full disk, say) is not a success, whatever it measured.
    match outcome {
        Ok(record) => Ok(report(&record, true)),
        Err(greenflow_runs::RunError::NotSaved { record, .. }) => Ok(report(&record, false).max(exit::ERROR)),
        Err(e) => Err(e.into()),
    }
}

/// Prints a record's outcome and returns the exit status: the command's when it failed; 1 for a lossy or undrained
/// run; 2 for a failed one.
pub fn report(record: &RunRecord, saved: bool) -> u8 {
    let duration = record.end.map(|end| end - record.start).unwrap_or_default();
    let drain = record
        .drain
        .as_ref()
        .map(|d| match &d.detail {
            Some(detail) => format!("drain {:.1}s: {detail}", d.seconds),
            None => format!("drained in {:.1}s", d.seconds),
        })
        .unwrap_or_default();
    let status =
        serde_json::to_value(record.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    println!(
        "run {} {status}: {} series, {} samples in {}; {drain}",
        record.id,
        record.series.unwrap_or(0),
        record.samples.unwrap_or(0),
        human_duration(duration.try_into().unwrap_or_default()),
    );
    if let Some(error) = &record.error {
        eprintln!("greenflow: {error}");
    }
    if saved {
        eprintln!("record: `greenflow runs show {}`", record.id);
    } else {
        eprintln!(
            "greenflow: the run record could not be saved (see above); the run's data is in the sink as {{greenflow_run=\"{}\"}}",
            record.id
        );
    }
    let command = record.exit_status.filter(|c| *c != 0).map(|c| c.clamp(1, 255) as u8);
    match record.status {
        RunStatus::Failed => exit::ERROR,
        RunStatus::Lossy | RunStatus::NotDrained | RunStatus::Running => command.unwrap_or(exit::UNHEALTHY),
        RunStatus::Complete => command.unwrap_or(exit::OK),
    }
}

/// `greenflow run NAME`.
pub async fn run(settings: &Settings, args: &RunArgs) -> anyhow::Result<u8> {
    greenflow_runs::validate_name(&args.name)?;
    let workload = match (&args.duration, args.command.is_empty()) {
        (Some(d), true) => Workload::For(*d),
        (None, false) => Workload::Command(args.command.clone()),
        (None, true) => Workload::UntilInterrupted,
        (Some(_), false) => bail!("give either --duration or a command after `--`, not both"),
    };
    let kind = choose(settings, args.backend);
    let mut request = request(settings, &args.name, workload, kind);
    request.force = args.force;
    match kind {
        BackendKind::Local => {
            let (mut backend, sink) = local_backend(settings)?;
            // A sink of the Nix modules runs without greenflow's supervisor: ask the sink itself.
            if running_supervisor(settings).is_none() && sink.owner.health().await.is_err() {
                bail!("the sink is not running: start it with `greenflow sink up --detach` (or run `greenflow demo`)");
            }
            eprintln!("backend: local (a Prometheus agent on this machine)");
            drive(settings, &mut backend, sink, &request).await
        }
        BackendKind::Kube => {
            let (mut backend, sink) = kube_backend(settings).await?;
            eprintln!("backend: kube (namespace {})", settings.config.cluster.namespace);
            drive(settings, &mut backend, sink, &request).await
        }
    }
}

/// `greenflow runs recover [ID]`: finishes runs whose greenflow died, or whose drain timed out.
pub async fn recover(settings: &Settings, args: &RunsRecoverArgs) -> anyhow::Result<u8> {
    let store = RunStore::new(settings.paths.runs_dir());
    let host = lifecycle::host_name();
    let candidates: Vec<RunRecord> = store
        .list()?
        .into_iter()
        .filter(|r| args.id.as_deref().is_none_or(|id| r.id.as_str().starts_with(id)))
        .filter(|r| needs_recovery(r, &host, args.id.is_some()))
        .collect();
    if candidates.is_empty() {
        println!("nothing to recover: no run is left running by a greenflow that died");
        return Ok(exit::OK);
    }
    let mut worst = exit::OK;
    for record in candidates {
        eprintln!("recovering run {} ({}, {})", record.id, record.name, record.backend);
        let kind = if record.backend == BackendKind::Kube.as_str() { BackendKind::Kube } else { BackendKind::Local };
        let request = request(settings, &record.name, Workload::For(Duration::ZERO), kind);
        let code = match kind {
            BackendKind::Kube => {
                let (mut backend, sink) = kube_backend(settings).await?;
                recover_one(settings, &mut backend, sink, &request, record).await?
            }
            BackendKind::Local => {
                let (mut backend, sink) = local_backend(settings)?;
                recover_one(settings, &mut backend, sink, &request, record).await?
            }
        };
        worst = worst.max(code);
    }
    Ok(worst)
}

async fn recover_one<B: ClusterBackend>(
    settings: &Settings,
    backend: &mut B,
    sink: SinkAccess,
    request: &RunRequest,
    record: RunRecord,
) -> anyhow::Result<u8> {
    on_terminal(settings, sink, async |ctx| lifecycle::recover(backend, ctx, request, record).await).await
}

/// Whether a record describes a run nobody drives: left running on purpose, or `running` with its process gone.
fn needs_recovery(record: &RunRecord, host: &str, named: bool) -> bool {
    if record.cluster_left_running {
        return true;
    }
    if record.status != RunStatus::Running {
        return false;
    }
    match &record.process {
        Some(process) if process.host == host => !process_alive(process.pid),
        // Another machine drives it (or an old record): only when asked for by id.
        _ => named,
    }
}

/// Whether `pid` is still a greenflow process (on Linux a reused pid of another program does not count; elsewhere
/// any live process with that pid does, which errs on the side of leaving a run alone).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        return std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("greenflow"));
    }
    i32::try_from(pid).is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}
