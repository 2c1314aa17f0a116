//! The run lifecycle (design section 3), written once for every [`ClusterBackend`]:
//! preflight, lock, scale up, prove the path, the workload, drain, scale down, record.
//!
//! Nothing in the cluster changes before the preflight passed and the lock is held. From then on every exit path
//! drains (unless the user insists twice), scales down and writes the record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use greenflow_sink::{ImportSeries, SinkClient, SinkError, promql_string};
use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::backend::{BackendError, ClusterBackend};
use crate::drain::{DrainState, QueueMetrics, config_loaded, drain_state, parse_queue_metrics};
use crate::error::RunError;
use crate::record::{DrainOutcome, DrainReport, RUN_FORMAT_VERSION, RunId, RunProcess, RunRecord, RunStatus, RunStore};
use crate::{EXPERIMENT_LABEL, RUN_LABEL};

/// The series greenflow writes at a run's start and end (`phase` = `start` | `end`), for Grafana annotations.
pub const RUN_INFO_METRIC: &str = "greenflow_run_info";
/// The series of the preflight's probe write.
pub const PROBE_METRIC: &str = "greenflow_probe";

/// What the run does while Prometheus scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// Wait this long.
    For(Duration),
    /// Run this command; its exit status becomes the run's.
    Command(Vec<String>),
    /// Wait for Ctrl-C.
    UntilInterrupted,
}

/// One run to make.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The experiment name (`greenflow_experiment`).
    pub name: String,
    /// What happens during the run.
    pub workload: Workload,
    /// The cluster's scrape interval: the sink must hold samples this close to the end.
    pub scrape_interval: Duration,
    /// Wait at most this long for Prometheus to be ready.
    pub ready_timeout: Duration,
    /// Wait at most this long for the first sample in the sink.
    pub first_sample_timeout: Duration,
    /// Wait at most this long for the drain.
    pub drain_timeout: Duration,
    /// Scale down even when the drain timed out (samples still queued are lost).
    pub force: bool,
    /// Show live counts during the workload (off while a command writes to the terminal).
    pub live_counts: bool,
    /// Versions to record besides the back-end's (greenflow's own).
    pub versions: BTreeMap<String, String>,
}

/// Where the lifecycle tells the user what happens. `phase` starts a step (a spinner), `update` changes its line,
/// `note` prints a line that stays.
pub trait Reporter: Sync {
    /// A step begins.
    fn phase(&self, message: &str);
    /// The current step's state changed.
    fn update(&self, message: &str);
    /// A line to keep (a step's result, a warning).
    fn note(&self, message: &str);
}

/// Counts the stop requests (Ctrl-C, SIGTERM): one ends the workload and drains; two skip the drain.
#[derive(Debug, Clone)]
pub struct Interrupts {
    count: watch::Receiver<u32>,
}

impl Interrupts {
    /// Stop requests as counted by the sender.
    pub fn new(count: watch::Receiver<u32>) -> Self {
        Self { count }
    }

    /// A source that never fires, with its sender to fire it by hand.
    pub fn manual() -> (watch::Sender<u32>, Self) {
        let (tx, rx) = watch::channel(0);
        (tx, Self::new(rx))
    }

    /// How many arrived.
    pub fn count(&self) -> u32 {
        *self.count.borrow()
    }

    /// `step`'s output, or `None` when the `n`th stop request comes first (`step` is then dropped).
    pub async fn unless<T>(&mut self, n: u32, step: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            output = step => Some(output),
            _ = self.wait(n) => None,
        }
    }

    /// Resolves once at least `n` have arrived; never, when fewer did and no more can come (the sender is gone).
    pub async fn wait(&mut self, n: u32) {
        if self.count.wait_for(|count| *count >= n).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What the lifecycle works with besides the back-end.
pub struct RunContext<'a> {
    /// The sink through the address the cluster writes to, as its owner (queries, imports), e.g. `https://host/vm`.
    pub sink: SinkClient,
    /// The same address with the writer's credential, the one the cluster holds: the preflight proves it may
    /// remote-write. `None` skips that check.
    pub writer: Option<SinkClient>,
    /// VictoriaMetrics' own loopback address, when the sink is on this machine: read to explain writes that do not
    /// land (a full disk turns it read-only). `None`: not explained.
    pub storage: Option<SinkClient>,
    /// Where records go.
    pub store: RunStore,
    /// Where progress goes.
    pub reporter: &'a dyn Reporter,
    /// Stop requests.
    pub interrupts: Interrupts,
}

/// The host name, for lock holders and records.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The lock holder identity of a run: stable for the run, so `runs recover` on the same host can take it back.
pub fn lock_holder(id: &RunId) -> String {
    format!("{id}@{}", host_name())
}

fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// The PromQL selector of a run's data (its markers excluded).
pub fn run_selector(id: &RunId) -> String {
    format!("{{{RUN_LABEL}={},__name__!={}}}", promql_string(id.as_str()), promql_string(RUN_INFO_METRIC))
}

/// Proves the credentials and the path to the sink: writes one probe sample through the address the cluster uses
/// and reads it back. Changes nothing but that sample.
pub async fn probe_sink(sink: &SinkClient, id: &RunId, timeout: Duration) -> Result<(), RunError> {
    let token = format!("{:08x}", rand::rng().random::<u32>());
    let series = ImportSeries {
        metric: BTreeMap::from([
            ("__name__".to_owned(), PROBE_METRIC.to_owned()),
            // Not the run label: the probe must not pass for the run's first sample.
            ("probe_for".to_owned(), id.to_string()),
            ("probe".to_owned(), token.clone()),
        ]),
        values: vec![1.0],
        timestamps: vec![(unix(now()) * 1000.0) as i64],
    };
    sink.import(&[series])
        .await
        .map_err(|e| RunError::Probe { url: sink.base().to_owned(), detail: probe_hint(&e) })?;
    let query = format!("{PROBE_METRIC}{{probe={}}}", promql_string(&token));
    let deadline = Instant::now() + timeout;
    loop {
        let _ = sink.force_flush().await;
        match sink.query(&query).await {
            Ok(found) if !found.is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(RunError::Probe { url: sink.base().to_owned(), detail: probe_hint(&e) }),
        }
        if Instant::now() >= deadline {
            return Err(RunError::Probe {
                url: sink.base().to_owned(),
                detail: format!("the probe sample was accepted but not readable within {}s", timeout.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Proves that the writer's credential (the cluster's) may remote-write, without writing anything.
pub async fn probe_writer(writer: &SinkClient) -> Result<(), RunError> {
    writer.check_remote_write().await.map_err(|e| RunError::Probe {
        url: writer.base().to_owned(),
        detail: match e {
            SinkError::Status { status: 401, .. } => "the sink refused the writer's credential (401): the sink's \
                                                      writer password (<data>/secrets/sink-writer-password) changed; \
                                                      run `greenflow cluster install` again to update the Secret"
                .into(),
            other => other.to_string(),
        },
    })
}

fn probe_hint(error: &SinkError) -> String {
    match error {
        SinkError::Status { status: 401, .. } => "the sink refused the credentials (401): GREENFLOW_SINK_PASSWORD \
                                                  must be the sink's password (`greenflow sink url --show-password`)"
            .into(),
        other => other.to_string(),
    }
}

/// Awaits `step` unless a stop request comes first ([`RunError::Interrupted`]); for the steps before the lock,
/// which change nothing.
async fn unless_interrupted<T>(
    interrupts: &mut Interrupts,
    during: &'static str,
    step: impl Future<Output = Result<T, RunError>>,
) -> Result<T, RunError> {
    interrupts.unless(1, step).await.unwrap_or(Err(RunError::Interrupted { during }))
}

/// Makes one run: preflight, lock, scale up, prove the path, workload, drain, scale down, record.
///
/// Returns `Err` when nothing was changed (preflight or lock failed) and [`RunError::NotSaved`] when the run
/// happened but its final record could not be written; every other outcome, failures included, is a saved record.
pub async fn run<B: ClusterBackend>(
    backend: &mut B,
    ctx: &mut RunContext<'_>,
    request: &RunRequest,
) -> Result<RunRecord, RunError> {
    crate::validate_name(&request.name)?;
    let start = now();
    let id = RunId::new(start);

    ctx.reporter.phase(&format!("checking the sink at {}", ctx.sink.base()));
    let probed = unless_interrupted(&mut ctx.interrupts, "checking the sink", async {
        probe_sink(&ctx.sink, &id, Duration::from_secs(30)).await?;
        if let Some(writer) = &ctx.writer {
            probe_writer(writer).await?;
        }
        Ok(())
    });
    if let Err(err) = probed.await {
        return Err(match (err, full_disk(ctx.storage.as_ref()).await) {
            (RunError::Probe { url, detail }, Some(disk)) => {
                RunError::Probe { url, detail: format!("{detail}: {disk}") }
            }
            (err, _) => err,
        });
    }
    ctx.reporter.phase("checking the cluster");
    let info = unless_interrupted(&mut ctx.interrupts, "checking the cluster", async {
        backend.preflight().await.map_err(RunError::from)
    })
    .await?;
    ctx.reporter.note(&format!("sink accepts writes; cluster: {}", info.description));
    let holder = lock_holder(&id);
    let reporter = ctx.reporter;
    let progress = |line: &str| reporter.update(line);
    match ctx.interrupts.unless(1, backend.acquire_lock(&id, &holder, &progress)).await {
        Some(result) => result?,
        None => {
            // A Lease created just before the stop is ours: released (no-op when none was).
            if let Err(e) = backend.release_lock().await {
                reporter.note(&format!("warning: cannot release the experiment lock: {e}"));
            }
            return Err(RunError::Interrupted { during: "waiting for the experiment lock" });
        }
    }

    let mut versions = request.versions.clone();
    versions.extend(info.versions);
    let labels =
        BTreeMap::from([(RUN_LABEL.to_owned(), id.to_string()), (EXPERIMENT_LABEL.to_owned(), request.name.clone())]);
    let record = RunRecord {
        format_version: RUN_FORMAT_VERSION,
        id: id.clone(),
        name: request.name.clone(),
        status: RunStatus::Running,
        backend: backend.kind().to_string(),
        start,
        end: None,
        labels,
        series: None,
        samples: None,
        versions,
        command: match &request.workload {
            Workload::Command(command) => command.clone(),
            _ => Vec::new(),
        },
        exit_status: None,
        drain: None,
        error: None,
        process: Some(RunProcess { host: host_name(), pid: std::process::id() }),
        queue_at_start: None,
        cluster_left_running: false,
    };
    let mut active = ActiveRun::new(backend, ctx, request, record);
    if let Err(err) = active.save() {
        active.release().await;
        return Err(err);
    }
    active.reporter().note(&format!("run {id} ({}) started", request.name));
    active.drive().await;
    active.saved()
}

/// Finishes a run whose greenflow died, or whose drain timed out: drains, scales down, releases the lock, records.
pub async fn recover<B: ClusterBackend>(
    backend: &mut B,
    ctx: &mut RunContext<'_>,
    request: &RunRequest,
    record: RunRecord,
) -> Result<RunRecord, RunError> {
    let holder = lock_holder(&record.id);
    backend.preflight().await?;
    let reporter = ctx.reporter;
    backend.acquire_lock(&record.id, &holder, &|line: &str| reporter.update(line)).await?;
    let mut active = ActiveRun::new(backend, ctx, request, record);
    let end = active.record.end.unwrap_or_else(now);
    active.record.end = Some(end);
    active.queue_marker("end", end);
    active.record.process = Some(RunProcess { host: host_name(), pid: std::process::id() });
    active.record.cluster_left_running = false;
    // Whatever the run's Prometheus still holds is drained; a stand-in that did not survive has nothing left.
    let drain = active.backend.resume(&active.record.id).await?;
    active.finish(end, drain, None).await;
    active.saved()
}

struct ActiveRun<'r, 'c, 'a, B: ClusterBackend> {
    backend: &'r mut B,
    ctx: &'r mut RunContext<'c>,
    request: &'a RunRequest,
    record: RunRecord,
    last_renewal: Instant,
    pending_markers: Vec<ImportSeries>,
    /// Why the final record could not be written, if it could not.
    save_error: Option<RunError>,
    /// Set once the lock is someone else's: the run stops, drains, and leaves Prometheus and the lock alone.
    lock_lost: Option<String>,
}

/// How the active part of a run ended.
struct Active {
    /// Prometheus ran with the run's labels (so there is something to drain).
    scaled_up: bool,
    /// The path was proven (a sample arrived).
    flowing: bool,
    /// What failed, if anything.
    error: Option<String>,
}

impl<'r, 'c, 'a, B: ClusterBackend> ActiveRun<'r, 'c, 'a, B> {
    fn new(backend: &'r mut B, ctx: &'r mut RunContext<'c>, request: &'a RunRequest, record: RunRecord) -> Self {
        Self {
            backend,
            ctx,
            request,
            record,
            last_renewal: Instant::now(),
            pending_markers: Vec::new(),
            save_error: None,
            lock_lost: None,
        }
    }

    fn reporter(&self) -> &dyn Reporter {
        self.ctx.reporter
    }

    fn save(&self) -> Result<(), RunError> {
        self.ctx.store.save(&self.record).map(|_| ())
    }

    /// The finished record, or [`RunError::NotSaved`] with it when the final save failed.
    fn saved(self) -> Result<RunRecord, RunError> {
        match self.save_error {
            None => Ok(self.record),
            Some(source) => Err(RunError::NotSaved { record: Box::new(self.record), source: Box::new(source) }),
        }
    }

    async fn release(&mut self) {
        if let Err(e) = self.backend.release_lock().await {
            self.reporter().note(&format!("warning: cannot release the experiment lock: {e}"));
        }
    }

    /// Checks the lock when it is due. A failing renewal is reported, not fatal (the lock lives a lease duration);
    /// a lock someone else took stops the run ([`ActiveRun::interrupts`] counts it as a stop request).
    async fn tick(&mut self) {
        if self.lock_lost.is_some() || self.last_renewal.elapsed() < self.backend.renew_interval() {
            return;
        }
        self.last_renewal = Instant::now();
        match self.backend.renew_lock().await {
            Ok(()) => {}
            Err(e @ BackendError::LockLost { .. }) => {
                self.reporter().note(&format!("error: {e}"));
                self.lock_lost = Some(e.to_string());
            }
            Err(e) => self.reporter().note(&format!("warning: {e}")),
        }
    }

    /// Stop requests so far; a lost lock counts as one (stop the experiment, still drain).
    fn interrupts(&self) -> u32 {
        self.ctx.interrupts.count().max(u32::from(self.lock_lost.is_some()))
    }

    /// Sleeps up to `d`, waking early on the `n`th stop request.
    async fn pause(&mut self, d: Duration, n: u32) {
        self.ctx.interrupts.unless(n, tokio::time::sleep(d)).await;
    }

    fn queue_marker(&mut self, phase: &str, at: OffsetDateTime) {
        let mut metric = self.record.labels.clone();
        metric.insert("__name__".into(), RUN_INFO_METRIC.into());
        metric.insert("phase".into(), phase.into());
        self.pending_markers.push(ImportSeries {
            metric,
            values: vec![1.0],
            timestamps: vec![(unix(at) * 1000.0) as i64],
        });
    }

    /// Writes queued markers; keeps them queued when the sink does not take them.
    async fn flush_markers(&mut self) -> bool {
        if self.pending_markers.is_empty() {
            return true;
        }
        match bounded(self.ctx.sink.import(&self.pending_markers)).await.and_then(|r| r.map_err(|e| e.to_string())) {
            Ok(()) => {
                self.pending_markers.clear();
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "markers not written yet");
                false
            }
        }
    }

    /// The run's queue: every Prometheus pod's, as one ([`QueueMetrics::combine`]).
    async fn queue_metrics(&mut self) -> Result<QueueMetrics, String> {
        let texts = self.backend.prometheus_metrics().await.map_err(|e| e.to_string())?;
        let queues = texts
            .iter()
            .map(|text| parse_queue_metrics(text, self.backend.remote_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        QueueMetrics::combine(&queues).ok_or_else(|| "no Prometheus answered".to_owned())
    }

    async fn drive(&mut self) {
        let active = self.active().await;
        let end = now();
        self.record.end = Some(end);
        self.queue_marker("end", end);
        // Interrupted before the first sample (no error), what was scraped still drains; a run that failed before
        // samples flowed has nothing to drain.
        let drain = active.scaled_up && (active.flowing || active.error.is_none()) && self.interrupts() < 2;
        self.finish(end, drain, active.error).await;
    }

    /// Scale up, prove the path, run the workload.
    async fn active(&mut self) -> Active {
        let labels = self.record.labels.clone();
        self.reporter().phase("scaling Prometheus up");
        let reporter = self.ctx.reporter;
        let progress = |line: &str| reporter.update(line);
        let scaled =
            self.ctx.interrupts.unless(1, self.backend.scale_up(&labels, self.request.ready_timeout, &progress)).await;
        match scaled {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                let error = self.with_likely_cause(scale_up_error(e)).await;
                return Active { scaled_up: false, flowing: false, error: Some(error) };
            }
            None => {
                self.reporter().note("interrupted while Prometheus was starting; scaling it back down");
                return Active { scaled_up: false, flowing: false, error: None };
            }
        }
        self.record.queue_at_start = match self.wait_for_queue().await {
            Ok(Some(q)) => Some(q),
            Ok(None) => {
                self.reporter().note("interrupted before Prometheus' queue could be read; draining what was scraped");
                return Active { scaled_up: true, flowing: false, error: None };
            }
            Err(e) => return Active { scaled_up: true, flowing: false, error: Some(e) },
        };
        let _ = self.save();
        let start = self.record.start;
        self.queue_marker("start", start);
        self.flush_markers().await;

        match self.wait_first_sample().await {
            Ok(true) => {}
            Ok(false) => return Active { scaled_up: true, flowing: false, error: None },
            Err(e) => {
                let error = self.with_likely_cause(e).await;
                return Active { scaled_up: true, flowing: false, error: Some(error) };
            }
        }
        let error = self.workload().await.err();
        Active { scaled_up: true, flowing: true, error }
    }

    /// `error`, with the back-end's likely cause added when it sees one (bounded: a diagnosis never holds a run up).
    async fn with_likely_cause(&mut self, error: String) -> String {
        match tokio::time::timeout(Duration::from_secs(20), self.backend.diagnose_route()).await {
            Ok(Some(cause)) => format!("{error}; likely cause: {cause}"),
            _ => error,
        }
    }

    /// Reads the queue's counters right after scale-up: the baseline for losses.
    /// Waits (at most 30 s) until Prometheus' queue can be read. `Ok(None)`: interrupted.
    async fn wait_for_queue(&mut self) -> Result<Option<QueueMetrics>, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.interrupts() >= 1 {
                return Ok(None);
            }
            match self.queue_metrics().await {
                Ok(q) => return Ok(Some(q)),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot read Prometheus' remote-write queue: {e}"));
                }
                Err(e) => tracing::debug!(error = %e, "queue metrics not there yet"),
            }
            self.pause(Duration::from_millis(500), 1).await;
        }
    }

    /// Waits until the sink answers a query for a sample of this run. `Ok(false)`: interrupted.
    async fn wait_first_sample(&mut self) -> Result<bool, String> {
        let began = Instant::now();
        self.reporter().phase("waiting for the first sample of the run in the sink");
        let selector = run_selector(&self.record.id);
        let deadline = began + self.request.first_sample_timeout;
        let mut last_error = None;
        let mut sample_seen = false;
        loop {
            self.tick().await;
            if self.interrupts() >= 1 {
                self.reporter().note("interrupted before the first sample arrived; draining what was scraped");
                return Ok(false);
            }
            let _ = bounded(self.ctx.sink.force_flush()).await;
            match bounded(self.ctx.sink.query_value(&format!("count({selector})"))).await {
                Ok(Ok(Some(n))) if n > 0.0 => {
                    sample_seen = true;
                    // Every pod runs with the run's labels only once it has loaded its configuration.
                    if self.every_config_loaded().await {
                        break;
                    }
                    last_error = Some(
                        "a Prometheus pod has not loaded its configuration (prometheus_config_last_reload_successful \
                         is 0 or older than the process): see its log"
                            .into(),
                    );
                    self.reporter().update("waiting for every Prometheus pod to load its configuration");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(e) => last_error = Some(e),
            }
            // Every batch refused and none sent (a 401): say so now rather than at the timeout.
            if let Ok(q) = self.queue_metrics().await
                && let Some(base) = self.record.queue_at_start
                && q.samples_failed > base.samples_failed
                && q.highest_sent_timestamp <= base.highest_sent_timestamp
            {
                return Err(format!(
                    "the sink refuses Prometheus' writes ({} samples failed): check that the password Prometheus \
                     uses (the cluster's remote-write Secret) is the sink's",
                    q.samples_failed - base.samples_failed
                ));
            }
            if Instant::now() >= deadline {
                let what = if sample_seen {
                    "the run's labels were not proven in effect"
                } else {
                    "no sample of the run reached the sink"
                };
                return Err(format!(
                    "{what} within {}s{}",
                    self.request.first_sample_timeout.as_secs(),
                    last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
                ));
            }
            self.pause(Duration::from_millis(500), 1).await;
        }
        let first = began.elapsed();
        self.reporter().note(&format!("first sample in the sink {:.1}s after scale-up", first.as_secs_f64()));
        Ok(true)
    }

    /// No Prometheus says it has not loaded its configuration ([`config_loaded`]); unreadable metrics count as
    /// no objection (the drain reads them again).
    async fn every_config_loaded(&mut self) -> bool {
        match self.backend.prometheus_metrics().await {
            Ok(texts) => texts.iter().all(|text| config_loaded(text) != Some(false)),
            Err(e) => {
                tracing::debug!(error = %e, "no metrics to check the configuration load");
                true
            }
        }
    }

    async fn workload(&mut self) -> Result<(), String> {
        match self.request.workload.clone() {
            Workload::For(d) => {
                self.wait_until(Some(Instant::now() + d)).await;
                Ok(())
            }
            Workload::UntilInterrupted => {
                self.wait_until(None).await;
                Ok(())
            }
            Workload::Command(command) => self.run_command(&command).await,
        }
    }

    /// Waits for the deadline or a stop request, showing live counts.
    async fn wait_until(&mut self, until: Option<Instant>) {
        self.reporter().phase(match until {
            Some(_) => "running",
            None => "running until Ctrl-C",
        });
        let selector = run_selector(&self.record.id);
        loop {
            self.tick().await;
            if self.interrupts() >= 1 {
                return;
            }
            if self.request.live_counts
                && let Ok(Ok(line)) = bounded(live_counts(&self.ctx.sink, &selector, self.record.start)).await
            {
                self.reporter().update(&line);
            }
            let sleep = match until {
                Some(until) if Instant::now() >= until => return,
                Some(until) => until.saturating_duration_since(Instant::now()).min(Duration::from_secs(2)),
                None => Duration::from_secs(2),
            };
            self.pause(sleep, 1).await;
        }
    }

    async fn run_command(&mut self, command: &[String]) -> Result<(), String> {
        let Some((program, args)) = command.split_first() else {
            return Err("no command given".into());
        };
        self.reporter().note(&format!("running `{}`", shell_words(command)));
        // The experiment's command is the researcher's own, but greenflow's secrets are not its business.
        let mut expression = duct::cmd(program, args);
        for name in greenflow_config::SecretVar::ALL.iter().flat_map(|var| var.names()) {
            expression = expression.env_remove(name);
        }
        let handle = expression
            .env("GREENFLOW_RUN", self.record.id.as_str())
            .env("GREENFLOW_EXPERIMENT", &self.record.name)
            .unchecked()
            .start()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let mut signalled_at: Option<Instant> = None;
        let status = loop {
            self.tick().await;
            match handle.try_wait() {
                Ok(Some(output)) => break output.status,
                Ok(None) => {}
                Err(e) => return Err(format!("cannot wait for `{program}`: {e}")),
            }
            if self.interrupts() >= 1 {
                match signalled_at {
                    None => {
                        signalled_at = Some(Instant::now());
                        terminate(&handle);
                    }
                    Some(at) if at.elapsed() > Duration::from_secs(10) || self.interrupts() >= 2 => {
                        let _ = handle.kill();
                    }
                    Some(_) => {}
                }
            }
            self.pause(Duration::from_millis(100), 2).await;
        };
        let code = exit_code(&status);
        self.record.exit_status = Some(code);
        self.reporter().note(&format!("`{program}` exited with status {code}"));
        Ok(())
    }

    /// Drain (when asked), count, scale down, release, record.
    async fn finish(&mut self, end: OffsetDateTime, drain: bool, error: Option<String>) {
        let report = if drain {
            self.drain(end).await
        } else {
            let detail = match (&error, self.interrupts()) {
                (Some(_), _) => "the run failed before samples flowed",
                (None, n) if n >= 2 => "skipped by a second Ctrl-C",
                _ => "nothing to drain",
            };
            DrainReport {
                outcome: DrainOutcome::Skipped,
                seconds: 0.0,
                samples_failed: 0,
                samples_dropped: 0,
                sink_behind_seconds: None,
                detail: Some(detail.into()),
            }
        };
        if !self.flush_markers().await {
            self.reporter().note("warning: the run's start/end markers could not be written to the sink");
        }
        if let Ok((series, samples)) = counts(&self.ctx.sink, &run_selector(&self.record.id), self.record.start).await {
            self.record.series = Some(series);
            self.record.samples = Some(samples);
        }
        let leave_running = report.outcome == DrainOutcome::TimedOut && !self.request.force;
        let mut error = error;
        if let Some(lost) = &self.lock_lost {
            // Prometheus and the lock are the new holder's now: scaling down would end their run.
            error = Some(error.map_or_else(|| lost.clone(), |e| format!("{e}; {lost}")));
            let _ = self.backend.release_lock().await;
        } else if !self.backend.changed_prometheus() {
            // Refused before anything was patched: the Prometheus that runs is not this run's to stop.
            self.release().await;
        } else if leave_running {
            self.record.cluster_left_running = true;
            self.reporter().note(&format!(
                "Prometheus keeps running with its queue; `greenflow runs recover {}` finishes the drain once the sink answers",
                self.record.id
            ));
        } else {
            self.reporter().phase("scaling Prometheus down");
            let reporter = self.ctx.reporter;
            let progress = |line: &str| reporter.update(line);
            // One more stop request than so far stops the wait for the pod to be gone.
            let more = self.ctx.interrupts.count() + 1;
            let scaled = self.ctx.interrupts.unless(more, self.backend.scale_down(&progress)).await;
            match scaled {
                Some(Ok(())) => self.release().await,
                None => {
                    // The patch may or may not have gone out: recover makes sure, as for a failed scale-down.
                    self.record.cluster_left_running = true;
                    self.reporter().note(&format!(
                        "interrupted while Prometheus was scaling down; the experiment lock stays held until it \
                         lapses; `greenflow runs recover {}` scales it down and releases the lock",
                        self.record.id
                    ));
                }
                Some(Err(e)) => {
                    // The lock stays (it lapses a lease duration after greenflow exits, as nothing renews it):
                    // the next run must not start on this Prometheus.
                    self.record.cluster_left_running = true;
                    self.reporter().note(&format!(
                        "warning: cannot scale Prometheus down: {e}; the experiment lock stays held; `greenflow runs \
                         recover {}` scales it down and releases the lock",
                        self.record.id
                    ));
                }
            }
        }
        self.record.status = match (&error, report.outcome) {
            (Some(_), _) => RunStatus::Failed,
            (None, DrainOutcome::Drained) => RunStatus::Complete,
            (None, DrainOutcome::Lossy) => RunStatus::Lossy,
            (None, DrainOutcome::TimedOut | DrainOutcome::Skipped) => RunStatus::NotDrained,
        };
        self.record.error = error;
        self.record.drain = Some(report);
        if let Err(e) = self.save() {
            self.reporter().note(&format!("error: cannot save the run record: {e}"));
            self.save_error = Some(e);
        }
    }

    async fn drain(&mut self, end: OffsetDateTime) -> DrainReport {
        let began = Instant::now();
        let end_s = unix(end);
        let baseline = self.record.queue_at_start.unwrap_or_default();
        let selector = run_selector(&self.record.id);
        let deadline = began + self.request.drain_timeout;
        self.reporter().phase("draining: waiting until every sample of the run is in the sink");
        // Milliseconds are precision enough for a record people read.
        let ms = |seconds: f64| (seconds * 1000.0).round() / 1000.0;
        let report = |outcome, failed: f64, dropped: f64, behind: Option<f64>, detail: Option<String>| DrainReport {
            outcome,
            seconds: ms(began.elapsed().as_secs_f64()),
            samples_failed: failed as u64,
            samples_dropped: dropped as u64,
            sink_behind_seconds: behind.map(ms),
            detail,
        };
        let mut last = DrainState::Pending { samples_pending: 0.0, behind_seconds: f64::INFINITY };
        let mut in_at_end: Option<Option<f64>> = None;
        let mut disk: Option<String> = None;
        loop {
            self.tick().await;
            if self.interrupts() >= 2 {
                let (failed, dropped) = losses(&last);
                return report(DrainOutcome::Skipped, failed, dropped, None, Some("skipped by a second Ctrl-C".into()));
            }
            self.flush_markers().await;
            match self.queue_metrics().await {
                Ok(now_q) => {
                    // Read at the first poll after the end: a little later than the end, so a little stricter.
                    let entered = *in_at_end.get_or_insert(now_q.samples_in);
                    last = drain_state(&baseline, &now_q, end_s, entered);
                    match last {
                        DrainState::Drained => {
                            // Prometheus sent a sample at or after the end; the sink must hold it too.
                            let _ = bounded(self.ctx.sink.force_flush()).await;
                            let newest = bounded(newest_stored(&self.ctx.sink, &selector, self.record.start))
                                .await
                                .and_then(|r| r.map_err(|e| e.to_string()));
                            match newest {
                                Ok(Some(newest)) if newest >= end_s => {
                                    return report(DrainOutcome::Drained, 0.0, 0.0, Some(end_s - newest), None);
                                }
                                Ok(newest) => self.reporter().update(&format!(
                                    "Prometheus sent everything; the sink's newest sample of the run is {}",
                                    newest
                                        .map(|n| format!("{:.1}s before the end", end_s - n))
                                        .unwrap_or_else(|| "missing".into())
                                )),
                                Err(e) => self.reporter().update(&format!(
                                    "Prometheus sent everything; cannot query the sink: {}",
                                    short(&e)
                                )),
                            }
                        }
                        DrainState::Pending { samples_pending, behind_seconds } => {
                            disk = full_disk(self.ctx.storage.as_ref()).await;
                            let sink = match (&disk, self.ctx.sink.health().await) {
                                (Some(disk), _) => disk.clone(),
                                (None, Ok(())) => "the sink answers".to_owned(),
                                (None, Err(e)) => format!("the sink does not answer ({})", short(&e.to_string())),
                            };
                            let sent = if behind_seconds < 1e6 {
                                format!("sent up to {behind_seconds:.0}s before the end")
                            } else {
                                "nothing sent yet".to_owned()
                            };
                            self.reporter().update(&format!(
                                "{sink}; {samples_pending:.0} samples queued, {sent}; waiting at most {} \
                                 (run.drain_timeout; Ctrl-C again: stop without draining)",
                                humantime::format_duration(self.request.drain_timeout)
                            ));
                        }
                        DrainState::Lossy { failed, dropped, settled } => {
                            if settled {
                                let behind = newest_stored(&self.ctx.sink, &selector, self.record.start)
                                    .await
                                    .ok()
                                    .flatten()
                                    .map(|n| end_s - n);
                                return report(
                                    DrainOutcome::Lossy,
                                    failed,
                                    dropped,
                                    behind,
                                    Some(format!(
                                        "{failed:.0} samples failed and {dropped:.0} were dropped on the way to the sink \
                                         (a 401 means the cluster's password is not the sink's)"
                                    )),
                                );
                            }
                            self.reporter().update(&format!(
                                "samples lost ({failed:.0} failed, {dropped:.0} dropped); waiting for the rest of the queue"
                            ));
                        }
                    }
                }
                Err(e) => self.reporter().update(&format!("cannot read Prometheus' queue: {}", short(&e))),
            }
            if Instant::now() >= deadline {
                let (failed, dropped) = losses(&last);
                return report(
                    DrainOutcome::TimedOut,
                    failed,
                    dropped,
                    None,
                    Some(match &disk {
                        Some(disk) => format!(
                            "samples still queued after {}s (run.drain_timeout): {disk}, then `greenflow runs \
                             recover {}`",
                            self.request.drain_timeout.as_secs(),
                            self.record.id
                        ),
                        None => format!(
                            "samples still queued after {}s (run.drain_timeout)",
                            self.request.drain_timeout.as_secs()
                        ),
                    }),
                );
            }
            self.pause(drain_poll(began.elapsed()), 2).await;
        }
    }
}

/// How long the drain waits between two looks at the queue: a healthy sink holds the run's last sample within a
/// scrape interval and a batch deadline of its end, so the first seconds are polled four times a second (a 1 s poll
/// made the drain a whole number of seconds, half a second too long on average); a drain still waiting after 10 s
/// is a slow sink, polled every second.
fn drain_poll(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(10) { Duration::from_millis(250) } else { Duration::from_secs(1) }
}

/// Why VictoriaMetrics refuses writes, when it does because its disk is full (it turns read-only when the free space
/// falls below `-storage.minFreeDiskSpaceBytes`, and answers every write with 503 until space is freed).
async fn full_disk(storage: Option<&SinkClient>) -> Option<String> {
    let paths = bounded(storage?.read_only_paths()).await.ok()?.ok()?;
    (!paths.is_empty()).then(|| {
        format!(
            "VictoriaMetrics is read-only: the disk under `{}` is full (below -storage.minFreeDiskSpaceBytes); free \
             space there",
            paths.join("`, `")
        )
    })
}

/// Bounds a call to the sink inside a polling loop, so a hanging sink cannot stall lock renewal or Ctrl-C.
async fn bounded<T>(call: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(5), call).await.map_err(|_| "no answer within 5s".to_owned())
}

fn losses(state: &DrainState) -> (f64, f64) {
    match state {
        DrainState::Lossy { failed, dropped, .. } => (*failed, *dropped),
        _ => (0.0, 0.0),
    }
}

fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

fn scale_up_error(error: BackendError) -> String {
    format!("cannot scale Prometheus up: {error}")
}

/// The lookback that covers a run from `start` to now.
fn window_since(start: OffsetDateTime) -> u64 {
    ((unix(now()) - unix(start)).max(0.0) as u64) + 60
}

/// How far past now [`newest_stored`] evaluates its query. (`tlast_over_time` is VictoriaMetrics': its
/// `timestamp()` would give the evaluation time, not the sample's.)
const PAST_LATENCY_OFFSET: f64 = 60.0;

/// The timestamp of the run's newest sample the sink holds (seconds), whether queries show it yet or not: an instant
/// query at an explicit time past now is not held back by VictoriaMetrics' `-search.latencyOffset` (which applies
/// to queries for "now"; measured on 1.79 and 1.145: a sample 0 s old is missing from a query without `time` and
/// present with `time` = now + 60 s).
async fn newest_stored(sink: &SinkClient, selector: &str, start: OffsetDateTime) -> Result<Option<f64>, SinkError> {
    newest_at(sink, selector, start, PAST_LATENCY_OFFSET).await
}

/// The timestamp of the run's newest sample that queries show now (seconds).
async fn newest_sample(sink: &SinkClient, selector: &str, start: OffsetDateTime) -> Result<Option<f64>, SinkError> {
    newest_at(sink, selector, start, 0.0).await
}

/// The newest timestamp of `selector` since `start`, queried `ahead` seconds past now (0: for now, as graphs ask).
async fn newest_at(
    sink: &SinkClient,
    selector: &str,
    start: OffsetDateTime,
    ahead: f64,
) -> Result<Option<f64>, SinkError> {
    let window = window_since(start) + ahead as u64;
    let query = format!("max(tlast_over_time({selector}[{window}s]))");
    let at = (ahead > 0.0).then(|| unix(now()) + ahead);
    Ok(sink.query_at(&query, at).await?.first().map(|s| s.value))
}

/// Series and samples of the run in the sink now.
async fn counts(sink: &SinkClient, selector: &str, start: OffsetDateTime) -> Result<(u64, u64), SinkError> {
    let window = window_since(start);
    let series = sink.query_value(&format!("count(last_over_time({selector}[{window}s]))")).await?.unwrap_or(0.0);
    let samples = sink.query_value(&format!("sum(count_over_time({selector}[{window}s]))")).await?.unwrap_or(0.0);
    Ok((series as u64, samples as u64))
}

async fn live_counts(sink: &SinkClient, selector: &str, start: OffsetDateTime) -> Result<String, SinkError> {
    let (series, samples) = counts(sink, selector, start).await?;
    let newest = newest_sample(sink, selector, start).await?;
    let lag = newest.map(|t| format!("{:.1}s", (unix(now()) - t).max(0.0))).unwrap_or_else(|| "?".into());
    Ok(format!("{series} series, {samples} samples, newest {lag} old"))
}

fn shell_words(command: &[String]) -> String {
    command
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn terminate(handle: &duct::Handle) {
    for pid in handle.pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    }
}

fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_exclude_markers_and_quote_the_id() {
        let id: RunId = serde_json::from_str("\"20260101T000000Z-00ff\"").unwrap();
        assert_eq!(run_selector(&id), r#"{greenflow_run="20260101T000000Z-00ff",__name__!="greenflow_run_info"}"#);
    }

    #[test]
    fn commands_are_shown_as_a_shell_would_read_them() {
        let words = ["sh", "-c", "echo 'hi' $X", "a=b"].map(String::from);
        assert_eq!(shell_words(&words), r#"sh -c 'echo '\''hi'\'' $X' a=b"#);
    }
}
