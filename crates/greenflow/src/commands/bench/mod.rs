//! The benchmarks. Each figure comes with a baseline measured in the same run on the same binaries.
//!
//! - `greenflow bench startup`: how long the sink takes to report healthy and how long a new run's first sample takes
//!   to become visible.
//! - `greenflow bench drain`: freshness during a run (p50/p90), the first sample after scale-up (and its parts) and
//!   the drain time after the run, through the sink against straight into VictoriaMetrics.
//! - `greenflow bench ingest` ([`mod@ingest`]): remote-write throughput at cluster scale through the sink against straight
//!   into VictoriaMetrics.
//!
//! - `greenflow bench data` ([`mod@data`]): export throughput and memory, a run's copy between two VictoriaMetrics
//!   and NAR hashing, against a plain download, `vmctl vm-native` and `nix hash path`.
//! - `greenflow bench report` ([`mod@report`]): the report of a long cluster-sized run against downloading its
//!   samples.
//!
//! Everything runs in a temporary directory on free loopback ports; the user's sink and data are not touched.

mod data;
mod ingest;
mod probe;
mod report;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_runs::drain::parse_queue_metrics;
use greenflow_runs::{LocalCluster, RUN_LABEL, RunId};
use greenflow_sink::{Program, RunningSink, SinkClient, promql_string, sink_password};
use serde_json::json;
use time::OffsetDateTime;

pub use self::data::{data, export_child};
pub use self::ingest::ingest;
pub use self::report::report;
use crate::cli::{BenchDrainArgs, BenchStartupArgs};
use crate::exit;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A throw-away project: its own config, data and state under a temporary directory, with the template's
/// remote-write queue settings and programs, the stand-in scraping every `scrape_interval` and its agent on
/// `prometheus_port` (`None`: a free port at each start).
fn scratch_settings(
    dir: &std::path::Path,
    template: &Settings,
    scrape_interval: Duration,
    prometheus_port: Option<u16>,
) -> anyhow::Result<Settings> {
    use serde_yaml::{Mapping, Value};
    let map = |entries: Vec<(&str, Value)>| {
        Value::Mapping(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect::<Mapping>())
    };
    // Only absolute paths keep their meaning in another directory.
    let binary = |path: &Option<std::path::PathBuf>| match path {
        Some(p) if p.is_absolute() => Value::from(p.display().to_string()),
        _ => Value::Null,
    };
    let t = &template.config;
    let config = map(vec![
        (
            "sink",
            map(vec![
                ("http_port", Value::from(free_port()?)),
                (
                    "victoria_metrics",
                    map(vec![
                        ("port", Value::from(free_port()?)),
                        ("binary", binary(&t.sink.victoria_metrics.binary)),
                        // Freshness is read by queries: without VictoriaMetrics' latency offset they see a sample
                        // as soon as it is stored, on both paths alike.
                        ("search_latency_offset", Value::from("0s")),
                    ]),
                ),
                (
                    "caddy",
                    map(vec![("admin_port", Value::from(free_port()?)), ("binary", binary(&t.sink.caddy.binary))]),
                ),
                ("grafana", map(vec![("enabled", Value::from(false))])),
            ]),
        ),
        ("remote_write", serde_yaml::to_value(&t.remote_write)?),
        (
            "local",
            map(vec![
                ("scrape_interval", Value::from(format!("{}ms", scrape_interval.as_millis()))),
                ("prometheus_port", Value::from(prometheus_port.unwrap_or(0))),
                (
                    "prometheus_binary",
                    match &t.local.prometheus_binary {
                        Some(_) => binary(&t.local.prometheus_binary),
                        None => {
                            newest_prometheus(template).map_or(Value::Null, |p| Value::from(p.display().to_string()))
                        }
                    },
                ),
                ("node_exporter_binary", binary(&t.local.node_exporter_binary)),
            ]),
        ),
    ]);
    std::fs::write(dir.join("greenflow.yaml"), serde_yaml::to_string(&config)?)?;
    let mut env: Vec<(String, String)> =
        ["PATH", "HOME"].iter().filter_map(|k| template.env.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
    env.push(("XDG_DATA_HOME".into(), dir.join("data").display().to_string()));
    env.push(("XDG_STATE_HOME".into(), dir.join("state").display().to_string()));
    Ok(Settings::load(None, dir, env)?)
}

/// The newest Prometheus on the template's PATH (Prometheus 3 where one is installed beside an older one), as the
/// benchmarks measure what users run; `None` when there is none (the usual lookup then says so).
fn newest_prometheus(template: &Settings) -> Option<std::path::PathBuf> {
    let path = template.env.get("PATH")?;
    let mut found: Vec<(greenflow_sink::versions::Version, std::path::PathBuf)> = std::env::split_paths(path)
        .map(|dir| dir.join("prometheus"))
        .filter(|candidate| candidate.is_file())
        .filter_map(|candidate| {
            let release = greenflow_sink::versions::detect(Program::Prometheus, &candidate);
            Some((release.at_least()?, candidate))
        })
        .collect();
    found.sort_by_key(|(version, _)| *version);
    found.pop().map(|(_, path)| path)
}

/// The median of `values` (sorted in place); `None` when empty.
fn median_f64(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The `q` quantile (0..=1, nearest rank) of `values` (sorted in place); `None` when empty.
fn quantile(values: &mut [Duration], q: f64) -> Option<Duration> {
    values.sort();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
    values.get(rank - 1).copied()
}

/// Time until `GET url` answers 2xx.
async fn time_until_healthy(client: &SinkClient, started: Instant, timeout: Duration) -> anyhow::Result<Duration> {
    while client.health().await.is_err() {
        if started.elapsed() > timeout {
            bail!("{} did not answer within {timeout:?}", client.base());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

/// Time from starting a stand-in cluster that writes to `write_url` until `client` sees its first sample.
async fn first_sample(
    settings: &Settings,
    write_url: &str,
    client: &SinkClient,
    password: &greenflow_config::Secret,
) -> anyhow::Result<Duration> {
    let id = RunId::new(OffsetDateTime::now_utc());
    let plan = LocalCluster::plan(settings, &id, "bench", write_url, &settings.config.sink.username, password)?;
    let started = Instant::now();
    let cluster = LocalCluster::start(plan).await?;
    let query = format!("count({{{RUN_LABEL}={}}})", promql_string(id.as_str()));
    let result = async {
        loop {
            let _ = client.force_flush().await;
            if client.query_value(&query).await?.is_some_and(|n| n > 0.0) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("no sample within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    cluster.stop().await;
    result
}

/// Now, in seconds since the epoch, as Prometheus writes sample timestamps.
fn unix_now() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

/// The median, or `None` for no values.
fn median_or_none(values: &mut [Duration]) -> Option<Duration> {
    (!values.is_empty()).then(|| median(values))
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2 }
}

/// Runs the startup benchmark.
pub async fn startup(settings: &Settings, args: &BenchStartupArgs) -> anyhow::Result<u8> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let vm_binary =
        Program::VictoriaMetrics.locate(settings.config.sink.victoria_metrics.binary.as_deref(), &settings.env)?;
    let mut bare_vm = Vec::new();
    let mut sink_healthy = Vec::new();
    let mut direct_sample = Vec::new();
    let mut sink_sample = Vec::new();
    let mut demo_total = Vec::new();
    for run in 1..=args.runs {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;

        // Baseline 1: VictoriaMetrics alone, started by hand, until /health answers.
        let port = free_port()?;
        let started = Instant::now();
        let mut vm = tokio::process::Command::new(&vm_binary)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.path().join("bare-vm").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let bare = time_until_healthy(
            &SinkClient::new(format!("http://127.0.0.1:{port}"), None),
            started,
            Duration::from_secs(60),
        )
        .await;
        let _ = vm.kill().await;
        bare_vm.push(bare?);

        // The sink as `greenflow sink up` starts it, until every component is healthy (auth path included).
        let scratch = scratch_settings(dir.path(), settings, settings.config.local.scrape_interval, None)?;
        let started = Instant::now();
        let sink = RunningSink::start(&scratch, false).await?;
        if let Err(err) = sink.wait_healthy(Duration::from_secs(60), |_| {}).await {
            sink.stop().await;
            return Err(err.into());
        }
        let healthy = started.elapsed();
        sink_healthy.push(healthy);

        let password = sink_password(&scratch)?;
        let urls = sink.prepared().urls.clone();
        let vm_url = format!("http://127.0.0.1:{}", scratch.config.sink.victoria_metrics.port);
        let outcome = async {
            // Baseline 2: the stand-in cluster writing straight into VictoriaMetrics, read straight back.
            let direct = first_sample(
                &scratch,
                &format!("{vm_url}/api/v1/write"),
                &SinkClient::new(vm_url.clone(), None),
                &password,
            )
            .await?;
            // greenflow's path: through Caddy with basic auth, read back through Caddy.
            let client =
                SinkClient::new(urls.query_url.clone(), Some((scratch.config.sink.username.clone(), password.clone())));
            let through = first_sample(&scratch, &urls.remote_write_url, &client, &password).await?;
            anyhow::Ok((direct, through))
        }
        .await;
        sink.stop().await;
        let (direct, through) = outcome?;
        direct_sample.push(direct);
        sink_sample.push(through);
        demo_total.push(healthy + through);
        eprintln!(
            "run {run}/{}: bare VM {:.2}s, sink healthy {:.2}s, first sample direct {:.2}s, through the sink {:.2}s",
            args.runs,
            bare_vm[bare_vm.len() - 1].as_secs_f64(),
            healthy.as_secs_f64(),
            direct.as_secs_f64(),
            through.as_secs_f64()
        );
    }
    let bare = median(&mut bare_vm);
    let healthy = median(&mut sink_healthy);
    let direct = median(&mut direct_sample);
    let through = median(&mut sink_sample);
    let total = median(&mut demo_total);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    if args.json {
        let value = json!({
            "runs": args.runs,
            "scrape_interval_seconds": settings.config.local.scrape_interval.as_secs_f64(),
            "batch_send_deadline_seconds": settings.config.remote_write.batch_send_deadline.as_secs_f64(),
            "median_seconds": {
                "bare_victoria_metrics_healthy": bare.as_secs_f64(),
                "sink_healthy": healthy.as_secs_f64(),
                "first_sample_direct": direct.as_secs_f64(),
                "first_sample_through_sink": through.as_secs_f64(),
                "demo_start_to_first_sample": total.as_secs_f64(),
            },
            "ratios": {
                "sink_healthy_vs_bare_victoria_metrics": ratio(healthy, bare),
                "first_sample_through_sink_vs_direct": ratio(through, direct),
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("medians of {} runs", args.runs);
        println!(
            "  sink up to healthy            {:>7.2}s  ({:.2}x bare VictoriaMetrics to /health: {:.2}s)",
            healthy.as_secs_f64(),
            ratio(healthy, bare),
            bare.as_secs_f64()
        );
        println!(
            "  first sample through the sink {:>7.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s)",
            through.as_secs_f64(),
            ratio(through, direct),
            direct.as_secs_f64()
        );
        println!("  demo start to first sample    {:>7.2}s  (sink healthy + first sample)", total.as_secs_f64());
    }
    Ok(exit::OK)
}

/// A reporter that prints nothing and keeps what the lifecycle said, with when: the phases and notes time the
/// first sample, and the `running` phase bounds the freshness samples.
#[derive(Debug, Default)]
struct Recorder {
    events: std::sync::Mutex<Vec<(Instant, String)>>,
    running: Arc<AtomicBool>,
}

impl Recorder {
    fn push(&self, message: &str) {
        if let Ok(mut events) = self.events.lock() {
            events.push((Instant::now(), message.to_owned()));
        }
    }

    /// When the first event starting with `prefix` happened.
    fn when(&self, prefix: &str) -> Option<Instant> {
        self.events.lock().ok()?.iter().find(|(_, m)| m.starts_with(prefix)).map(|(at, _)| *at)
    }
}

impl greenflow_runs::Reporter for Recorder {
    fn phase(&self, message: &str) {
        self.running.store(message == "running", Ordering::SeqCst);
        self.push(message);
    }
    fn update(&self, _: &str) {}
    fn note(&self, message: &str) {
        self.push(message);
    }
}

/// When the stand-in's agent reached each step, as seen by polling it every 50 ms, and where its part of the
/// freshness goes while the workload runs (polled every 250 ms).
#[derive(Debug, Default, Clone)]
struct AgentSteps {
    /// `/-/ready` answered.
    ready: Option<Instant>,
    /// The first scrape was appended (`prometheus_remote_storage_samples_in_total` > 0, else the highest timestamp).
    first_scrape: Option<Instant>,
    /// The first batch was sent (`prometheus_remote_storage_samples_total` > 0).
    first_send: Option<Instant>,
    /// Age of the newest sample the agent appended (now − its highest timestamp): the scrape's own share.
    appended_ages: Vec<Duration>,
    /// Newest appended − newest sent timestamp: how far the queue's sending trails the scrapes.
    send_lags: Vec<Duration>,
}

/// Polls the agent at `addr` until `done`: every 50 ms until its first send, then every 250 ms while `running`.
async fn watch_agent(addr: String, done: Arc<AtomicBool>, running: Arc<AtomicBool>) -> AgentSteps {
    let mut steps = AgentSteps::default();
    while !done.load(Ordering::SeqCst) {
        if steps.first_send.is_some() {
            if running.load(Ordering::SeqCst)
                && let Ok(text) = target::get(&addr, "/metrics").await
                && let Ok(q) = parse_queue_metrics(&text, "greenflow-sink")
                && q.highest_sent_timestamp > 0.0
            {
                let now = unix_now();
                steps.appended_ages.push(Duration::from_secs_f64((now - q.highest_timestamp).max(0.0)));
                let lag = q.highest_timestamp - q.highest_sent_timestamp;
                steps.send_lags.push(Duration::from_secs_f64(lag.max(0.0)));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if steps.ready.is_none() {
            if target::get(&addr, "/-/ready").await.is_ok() {
                steps.ready = Some(Instant::now());
            }
        } else if let Ok(text) = target::get(&addr, "/metrics").await
            && let Ok(q) = parse_queue_metrics(&text, "greenflow-sink")
        {
            let now = Instant::now();
            if steps.first_scrape.is_none() && (q.samples_in.unwrap_or(0.0) > 0.0 || q.highest_timestamp > 0.0) {
                steps.first_scrape = Some(now);
            }
            if q.samples_sent > 0.0 {
                steps.first_send = Some(now);
                steps.first_scrape.get_or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    steps
}

/// The figures of one whole run.
#[derive(Debug, Clone)]
struct RunFigures {
    /// Run end to drained, as the record says.
    drain: Duration,
    /// Ages of the newest visible sample, polled every 250 ms while the workload ran.
    ages: Vec<Duration>,
    /// The agent's share of those ages: its newest appended sample's age, and how far sending trailed it.
    appended_ages: Vec<Duration>,
    send_lags: Vec<Duration>,
    /// The lifecycle's own "first sample in the sink N s after scale-up".
    first_sample: Option<Duration>,
    /// Seconds after the scale-up began: agent ready, first scrape, first send, first sample visible.
    parts: [Option<f64>; 5],
}

/// The names of [`RunFigures::parts`].
const PARTS: [&str; 5] = ["agent_ready", "scale_up_done", "first_scrape", "first_send", "first_visible"];

/// One whole run named `name` on the local back-end writing to `write_url`, read through `client`.
async fn measured_run(
    settings: &Settings,
    name: &str,
    write_url: &str,
    client: &SinkClient,
    password: &greenflow_config::Secret,
    duration: Duration,
) -> anyhow::Result<RunFigures> {
    use greenflow_runs::lifecycle::{self, RunContext};
    use greenflow_runs::{DrainOutcome, Interrupts, LocalBackend, RunStore, Workload};

    let mut backend = LocalBackend::new(
        settings,
        write_url,
        &settings.config.sink.username,
        password.clone(),
        crate::commands::run::local_cluster_launcher()?,
    );
    let request =
        crate::commands::run::request(settings, name, Workload::For(duration), greenflow_runs::BackendKind::Local);
    let (_stop, interrupts) = Interrupts::manual();
    let recorder = Recorder::default();
    let mut ctx = RunContext {
        sink: client.clone(),
        // The agent writes as `client` does; the writer's own check belongs to real runs.
        writer: None,
        storage: None,
        store: RunStore::new(settings.paths.runs_dir()),
        reporter: &recorder,
        interrupts,
    };
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (done, running) = (Arc::clone(&done), Arc::clone(&recorder.running));
        let client = client.clone();
        let query = format!("max(tlast_over_time({{greenflow_experiment={}}}[1m]))", promql_string(name));
        tokio::spawn(async move {
            let mut ages = Vec::new();
            while !done.load(Ordering::SeqCst) {
                if running.load(Ordering::SeqCst)
                    && let Ok(Some(newest)) = client.query_value(&query).await
                {
                    let now = unix_now();
                    ages.push(Duration::from_secs_f64((now - newest).max(0.0)));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            ages
        })
    };
    let agent = tokio::spawn(watch_agent(
        format!("127.0.0.1:{}", settings.config.local.prometheus_port),
        Arc::clone(&done),
        Arc::clone(&recorder.running),
    ));
    let record = lifecycle::run(&mut backend, &mut ctx, &request).await;
    done.store(true, Ordering::SeqCst);
    let ages = poller.await.unwrap_or_default();
    let steps = agent.await.unwrap_or_default();
    let record = record?;
    let drain = record.drain.context("the run has no drain result")?;
    if drain.outcome != DrainOutcome::Drained {
        bail!("run {} did not drain: {}", record.id, drain.detail.unwrap_or_default());
    }
    let began = recorder.when("scaling Prometheus up");
    let waiting = recorder.when("waiting for the first sample");
    let visible = recorder.when("first sample in the sink");
    let after = |at: Option<Instant>| began.zip(at).map(|(b, a)| a.saturating_duration_since(b).as_secs_f64());
    Ok(RunFigures {
        drain: Duration::from_secs_f64(drain.seconds),
        ages,
        appended_ages: steps.appended_ages,
        send_lags: steps.send_lags,
        first_sample: waiting.zip(visible).map(|(w, v)| v.saturating_duration_since(w)),
        parts: [after(steps.ready), after(waiting), after(steps.first_scrape), after(steps.first_send), after(visible)],
    })
}

/// Per-run summaries of one path: drain, freshness p50 and p90, first sample after scale-up, parts.
#[derive(Debug, Default)]
struct PathRuns {
    drain: Vec<Duration>,
    p50: Vec<Duration>,
    p90: Vec<Duration>,
    /// Per run: the p50 of the agent's newest appended sample's age, and the p50 of its send lag.
    appended_p50: Vec<Duration>,
    send_lag_p50: Vec<Duration>,
    first: Vec<Duration>,
    parts: [Vec<f64>; 5],
    json: Vec<serde_json::Value>,
}

impl PathRuns {
    fn add(&mut self, run: u32, path: &str, mut figures: RunFigures) -> anyhow::Result<()> {
        let p50 = quantile(&mut figures.ages, 0.5).context("no sample was visible while the run was going")?;
        let p90 = quantile(&mut figures.ages, 0.9).unwrap_or(p50);
        self.drain.push(figures.drain);
        self.p50.push(p50);
        self.p90.push(p90);
        let appended_p50 = quantile(&mut figures.appended_ages, 0.5);
        let send_lag_p50 = quantile(&mut figures.send_lags, 0.5);
        self.appended_p50.extend(appended_p50);
        self.send_lag_p50.extend(send_lag_p50);
        if let Some(first) = figures.first_sample {
            self.first.push(first);
        }
        for (all, part) in self.parts.iter_mut().zip(figures.parts) {
            all.extend(part);
        }
        self.json.push(json!({
            "run": run,
            "path": path,
            "drain_seconds": figures.drain.as_secs_f64(),
            "freshness_p50_seconds": p50.as_secs_f64(),
            "freshness_p90_seconds": p90.as_secs_f64(),
            "freshness_samples": figures.ages.len(),
            "agent_newest_appended_age_p50_seconds": appended_p50.map(|d| d.as_secs_f64()),
            "agent_send_lag_p50_seconds": send_lag_p50.map(|d| d.as_secs_f64()),
            "first_sample_after_scale_up_seconds": figures.first_sample.map(|d| d.as_secs_f64()),
            "seconds_after_scale_up_began": PARTS.iter().zip(figures.parts).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }));
        Ok(())
    }

    /// Medians over the runs of the agent's two shares of the freshness: appended age, send lag.
    fn agent_medians(&mut self) -> (Option<Duration>, Option<Duration>) {
        (median_or_none(&mut self.appended_p50), median_or_none(&mut self.send_lag_p50))
    }

    fn medians(&mut self) -> (Duration, Duration, Duration, Option<Duration>, serde_json::Value) {
        let parts = PARTS
            .iter()
            .zip(self.parts.iter_mut())
            .map(|(k, v)| (k.to_string(), json!(median_f64(v))))
            .collect::<serde_json::Map<_, _>>();
        let first = median_or_none(&mut self.first);
        (median(&mut self.drain), median(&mut self.p50), median(&mut self.p90), first, parts.into())
    }
}

/// Runs the freshness, first-sample and drain benchmark.
pub async fn drain(settings: &Settings, args: &BenchDrainArgs) -> anyhow::Result<u8> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    // A fixed port for the stand-in's agent, so that its steps can be watched.
    let scratch = scratch_settings(dir.path(), settings, settings.config.local.scrape_interval, Some(free_port()?))?;
    let sink = RunningSink::start(&scratch, false).await?;
    if let Err(err) = sink.wait_healthy(Duration::from_secs(60), |_| {}).await {
        sink.stop().await;
        return Err(err.into());
    }
    let outcome = async {
        let password = sink_password(&scratch)?;
        let urls = sink.prepared().urls.clone();
        let vm_url = format!("http://127.0.0.1:{}", scratch.config.sink.victoria_metrics.port);
        let direct_client = SinkClient::new(vm_url.clone(), None);
        let sink_client =
            SinkClient::new(urls.query_url.clone(), Some((scratch.config.sink.username.clone(), password.clone())));
        let (mut direct, mut through) = (PathRuns::default(), PathRuns::default());
        for run in 1..=args.runs {
            let write = format!("{vm_url}/api/v1/write");
            let d = measured_run(
                &scratch,
                &format!("bench-{run}-direct"),
                &write,
                &direct_client,
                &password,
                args.duration,
            )
            .await?;
            let s = measured_run(
                &scratch,
                &format!("bench-{run}-sink"),
                &urls.remote_write_url,
                &sink_client,
                &password,
                args.duration,
            )
            .await?;
            let line = |f: &RunFigures| {
                format!(
                    "drain {:.2}s, first sample {}s after scale-up",
                    f.drain.as_secs_f64(),
                    f.first_sample.map(|d| format!("{:.2}", d.as_secs_f64())).unwrap_or_else(|| "?".into())
                )
            };
            eprintln!("run {run}/{}: direct: {}; through the sink: {}", args.runs, line(&d), line(&s));
            direct.add(run, "direct", d)?;
            through.add(run, "through_sink", s)?;
        }
        anyhow::Ok((direct, through))
    }
    .await;
    sink.stop().await;
    let (mut direct, mut through) = outcome?;
    let (drain_direct, p50_direct, p90_direct, first_direct, parts_direct) = direct.medians();
    let (drain_sink, p50_sink, p90_sink, first_sink, parts_sink) = through.medians();
    let (appended_direct, lag_direct) = direct.agent_medians();
    let (appended_sink, lag_sink) = through.agent_medians();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let opt_ratio = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| ratio(a, b));
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let interval = scratch.config.local.scrape_interval;
    let deadline = scratch.config.remote_write.batch_send_deadline;
    let drain_goal = interval + deadline + Duration::from_millis(500);
    if args.json {
        let value = json!({
            "runs": args.runs,
            "run_seconds": args.duration.as_secs_f64(),
            "scrape_interval_seconds": interval.as_secs_f64(),
            "batch_send_deadline_seconds": deadline.as_secs_f64(),
            "median_seconds": {
                "freshness_p50_direct": p50_direct.as_secs_f64(),
                "freshness_p50_through_sink": p50_sink.as_secs_f64(),
                "freshness_p90_direct": p90_direct.as_secs_f64(),
                "freshness_p90_through_sink": p90_sink.as_secs_f64(),
                "agent_newest_appended_age_p50_direct": secs(appended_direct),
                "agent_newest_appended_age_p50_through_sink": secs(appended_sink),
                "agent_send_lag_p50_direct": secs(lag_direct),
                "agent_send_lag_p50_through_sink": secs(lag_sink),
                "first_sample_after_scale_up_direct": secs(first_direct),
                "first_sample_after_scale_up_through_sink": secs(first_sink),
                "drain_direct": drain_direct.as_secs_f64(),
                "drain_through_sink": drain_sink.as_secs_f64(),
            },
            "first_sample_parts_median_seconds_after_scale_up_began": {
                "direct": parts_direct,
                "through_sink": parts_sink,
            },
            "ratios": {
                "freshness_p50_through_sink_vs_direct": ratio(p50_sink, p50_direct),
                "freshness_p90_through_sink_vs_direct": ratio(p90_sink, p90_direct),
                "agent_send_lag_p50_through_sink_vs_direct": opt_ratio(lag_sink, lag_direct),
                "first_sample_through_sink_vs_direct": opt_ratio(first_sink, first_direct),
                "drain_through_sink_vs_direct": ratio(drain_sink, drain_direct),
                "drain_through_sink_vs_scrape_interval_plus_deadline_plus_half_second": ratio(drain_sink, drain_goal),
            },
            "per_run": direct.json.iter().chain(&through.json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "medians of {} runs of {} each (scrape every {}, batch deadline {})",
            args.runs,
            humantime::format_duration(args.duration),
            humantime::format_duration(interval),
            humantime::format_duration(deadline)
        );
        println!(
            "  freshness p50 (newest visible sample's age) {:>6.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s)",
            p50_sink.as_secs_f64(),
            ratio(p50_sink, p50_direct),
            p50_direct.as_secs_f64()
        );
        println!(
            "  freshness p90                               {:>6.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s)",
            p90_sink.as_secs_f64(),
            ratio(p90_sink, p90_direct),
            p90_direct.as_secs_f64()
        );
        let or_q = |d: Option<Duration>| d.map(|d| format!("{:.2}s", d.as_secs_f64())).unwrap_or_else(|| "?".into());
        println!(
            "    of which in the agent, through the sink: newest appended sample {} old, sending {} behind it \
             (straight: {}, {}); the rest is VictoriaMetrics making rows searchable",
            or_q(appended_sink),
            or_q(lag_sink),
            or_q(appended_direct),
            or_q(lag_direct)
        );
        if let (Some(s), Some(d)) = (first_sink, first_direct) {
            println!(
                "  first sample after scale-up                 {:>6.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s)",
                s.as_secs_f64(),
                ratio(s, d),
                d.as_secs_f64()
            );
        }
        let part =
            |v: &serde_json::Value, k: &str| v[k].as_f64().map(|x| format!("{x:.2}s")).unwrap_or_else(|| "?".into());
        println!(
            "    after the scale-up began, through the sink: agent ready {}, scale-up done {}, first scrape {}, \
             first send {}, visible {}",
            part(&parts_sink, "agent_ready"),
            part(&parts_sink, "scale_up_done"),
            part(&parts_sink, "first_scrape"),
            part(&parts_sink, "first_send"),
            part(&parts_sink, "first_visible")
        );
        println!(
            "  drain (run end to drained)                  {:>6.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s; \
             goal: scrape interval + batch deadline + 0.5s = {:.1}s)",
            drain_sink.as_secs_f64(),
            ratio(drain_sink, drain_direct),
            drain_direct.as_secs_f64(),
            drain_goal.as_secs_f64()
        );
    }
    Ok(exit::OK)
}
