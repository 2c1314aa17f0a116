//! `greenflow bench ingest`: remote-write throughput at cluster scale, through the sink's Caddy with auth against
//! straight into VictoriaMetrics, in alternating rounds of one run.
//!
//! A round starts a real Prometheus in agent mode that scrapes the synthetic targets ([`super::target`]) and writes
//! with exactly the configuration greenflow renders for its own agents ([`greenflow_runs::sink_agent_input`] and
//! [`greenflow_render::render_agent_config`]: the `remote_write` queue settings, external labels, basic auth with
//! the writer's credential). After its first send, a warm-up and the catching up with its start-up backlog (it starts
//! with one shard), it is measured for the round's duration:
//!
//! - samples/s delivered, counted by VictoriaMetrics' own `vm_rows_inserted_total`, cross-checked with the agent's
//!   `prometheus_remote_storage_samples_total` (both generations of Prometheus name it so);
//! - whether the queue kept up: the newest sample sent stays within `2 x (scrape interval + batch deadline)` of the
//!   newest sample queued, and the pending samples do not grow by more than one scrape's worth;
//! - CPU seconds per million samples of VictoriaMetrics, Caddy, the agent and the bench's own process (the targets),
//!   from `/proc/<pid>/stat`.
//!
//! Rounds alternate the order of the paths (direct first, then the sink first, ...) so that drift on the machine
//! weighs on both alike; every figure is a median over rounds.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_render::{ScrapeJob, render_agent_config};
use greenflow_runs::drain::{QueueMetrics, parse_queue_metrics};
use greenflow_runs::{EXPERIMENT_LABEL, RUN_LABEL, sink_agent_input};
use greenflow_sink::supervisor::{ProcessSpec, Supervisor};
use greenflow_sink::versions::{self, Release};
use greenflow_sink::{
    ComponentName, Program, RunningSink, ensure_dir, write_public, writer_password, writer_password_file,
};
use serde::Serialize;

use super::probe::{cpu_seconds, machine_busy_seconds, metric_sum};
use super::target::{SyntheticTargets, get};
use super::{free_port, median_f64, scratch_settings};
use crate::cli::BenchIngestArgs;
use crate::exit;

/// The queue name [`sink_agent_input`] gives the agent's remote write.
const REMOTE_NAME: &str = "greenflow-sink";
/// Series Prometheus adds per target and scrape (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
/// `scrape_samples_post_metric_relabeling`, `scrape_series_added`).
const REPORT_SERIES: u64 = 5;
/// A round is sustained when VictoriaMetrics received at least this share of the offered rate.
const SUSTAINED_SHARE: f64 = 0.95;
/// `--max`: each step multiplies the series per target by this until a path falls behind, then bisects.
const MAX_STEP: f64 = 1.5;
/// `--max`: bisections after the first step that falls behind.
const MAX_BISECTIONS: u32 = 2;
/// `--max`: at most this many steps per path.
const MAX_STEPS: u32 = 14;
/// After the warm-up, how long a round waits at most for the queue to catch up with its start-up backlog.
const MAX_CATCH_UP: Duration = Duration::from_secs(90);

/// The two ways into VictoriaMetrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `http://127.0.0.1:<vm>/api/v1/write`.
    Direct,
    /// Caddy's `/vm/api/v1/write` with the writer's basic auth.
    Sink,
}

impl Path {
    fn key(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Sink => "through_sink",
        }
    }
}

/// CPU seconds used so far by each program that matters.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    victoria_metrics: Option<f64>,
    caddy: Option<f64>,
    agent: Option<f64>,
    bench: Option<f64>,
    /// The whole machine.
    machine: Option<f64>,
}

/// One reading of both counters.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    /// VictoriaMetrics' `vm_rows_inserted_total`, all types.
    rows: f64,
    /// The agent's queue.
    queue: QueueMetrics,
    cpu: Cpu,
    /// Scrapes the synthetic targets answered.
    scrapes: u64,
}

/// A figure per program, `None` where it could not be read.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct PerProgram {
    victoria_metrics: Option<f64>,
    caddy: Option<f64>,
    prometheus_agent: Option<f64>,
    /// greenflow's own process: the synthetic targets and the bench's polling.
    bench_targets: Option<f64>,
}

/// The queue during a round's measured window.
#[derive(Debug, Clone, Serialize)]
struct QueueFigures {
    kept_up: bool,
    /// Newest sample queued minus newest sample sent, seconds (Prometheus' own `highest_timestamp` figures).
    lag_max_seconds: f64,
    lag_median_seconds: f64,
    lag_bound_seconds: f64,
    pending_first_quarter: f64,
    pending_last_quarter: f64,
    pending_max: f64,
    shards_max: f64,
}

/// One measured round of one path.
#[derive(Debug, Clone, Serialize)]
struct Round {
    round: u32,
    path: &'static str,
    targets: u32,
    series_per_target: u64,
    /// `targets x (series per target + 5 report series) / scrape interval`.
    offered_samples_per_second: f64,
    /// From the agent's first send to the measured window: the warm-up and the catching up after it.
    warmup_seconds: f64,
    measured_seconds: f64,
    /// Scrapes of all targets per second the synthetic targets answered (`targets / scrape interval` when the agent
    /// keeps its schedule).
    target_scrapes_per_second: f64,
    /// Counted by VictoriaMetrics (`vm_rows_inserted_total`).
    samples_per_second: f64,
    /// Counted by the agent (`prometheus_remote_storage_samples_total`).
    prometheus_sent_samples_per_second: f64,
    /// `|VictoriaMetrics - Prometheus| / VictoriaMetrics` over the window.
    cross_check_difference: Option<f64>,
    delivered_share_of_offered: f64,
    samples_failed: f64,
    queue: QueueFigures,
    cpu_seconds_per_million_samples: PerProgram,
    cores: PerProgram,
    /// Cores the whole machine was busy, and the part of it none of the programs above used (other jobs: a
    /// figure well above 0 means the round shared the machine).
    machine_busy_cores: Option<f64>,
    other_busy_cores: Option<f64>,
    /// Kept up, nothing failed, and at least 95 % of the offered rate delivered.
    sustained: bool,
}

/// Medians over the rounds of one path.
#[derive(Debug, Clone, Serialize)]
struct PathSummary {
    rounds: usize,
    rounds_kept_up: usize,
    rounds_sustained: usize,
    samples_per_second: f64,
    prometheus_sent_samples_per_second: f64,
    cross_check_difference_max: Option<f64>,
    lag_max_seconds: f64,
    cpu_seconds_per_million_samples: PerProgram,
    cores: PerProgram,
    /// The highest share of a round's machine CPU that other jobs took (see [`Round::other_busy_cores`]).
    other_busy_cores_max: Option<f64>,
}

/// Everything one bench needs while it runs.
struct Bench<'a> {
    scratch: &'a Settings,
    dir: PathBuf,
    prometheus: PathBuf,
    agent_flag: &'static str,
    targets: SyntheticTargets,
    target_count: u32,
    scrape_interval: Duration,
    labels: BTreeMap<String, String>,
    writer: String,
    writer_password_file: String,
    vm_addr: String,
    direct_url: String,
    sink_url: String,
    vm_pid: Option<u32>,
    caddy_pid: Option<u32>,
    warmup: Duration,
    window: Duration,
}

/// A running agent.
struct Agent {
    supervisor: Supervisor,
    listen: String,
    log: PathBuf,
}

impl Agent {
    fn pid(&self) -> Option<u32> {
        self.supervisor.states().first().and_then(|s| s.pid)
    }

    async fn queue(&self) -> anyhow::Result<(QueueMetrics, String)> {
        let text = get(&self.listen, "/metrics").await?;
        Ok((parse_queue_metrics(&text, REMOTE_NAME)?, text))
    }
}

impl Bench<'_> {
    fn offered(&self, series: u64) -> f64 {
        f64::from(self.target_count) * (series + REPORT_SERIES) as f64 / self.scrape_interval.as_secs_f64()
    }

    fn cpu(&self, agent: &Agent) -> Cpu {
        Cpu {
            victoria_metrics: self.vm_pid.and_then(cpu_seconds),
            caddy: self.caddy_pid.and_then(cpu_seconds),
            agent: agent.pid().and_then(cpu_seconds),
            bench: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
        }
    }

    /// Writes the agent's configuration as greenflow renders it and starts it; returns once it is ready.
    async fn start_agent(&self, path: Path, tag: &str) -> anyhow::Result<Agent> {
        let dir = self.dir.join(format!("agent-{tag}"));
        ensure_dir(&dir.join("logs"))?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let target = self.targets.address();
        let jobs = (0..self.target_count).map(|i| ScrapeJob { name: format!("node-{i:04}"), target: target.clone() });
        let url = match path {
            Path::Direct => &self.direct_url,
            Path::Sink => &self.sink_url,
        };
        let input =
            sink_agent_input(self.scratch, &self.labels, jobs.collect(), url, &self.writer, &self.writer_password_file);
        let config = dir.join("prometheus.yml");
        write_public(&config, &render_agent_config(&input)?)?;
        let log = dir.join("logs/prometheus.log");
        let spec = ProcessSpec {
            name: "prometheus-agent".into(),
            program: self.prometheus.clone(),
            args: [
                self.agent_flag.to_owned(),
                format!("--config.file={}", config.display()),
                format!("--storage.agent.path={}", dir.join("wal").display()),
                format!("--web.listen-address={listen}"),
                "--storage.remote.flush-deadline=2s".to_owned(),
            ]
            .into_iter()
            .map(OsString::from)
            .collect(),
            env: Vec::new(),
            log_file: log.clone(),
            stop_grace: Duration::from_secs(10),
        };
        let agent = Agent { supervisor: Supervisor::start(vec![spec]).await?, listen, log };
        let began = Instant::now();
        let failure = loop {
            if let Some((name, failure)) = agent.supervisor.startup_failure() {
                break format!("{name} exited during start-up: {failure}");
            }
            if get(&agent.listen, "/-/ready").await.is_ok() {
                agent.supervisor.mark_started();
                return Ok(agent);
            }
            if began.elapsed() > Duration::from_secs(60) {
                break format!("the agent was not ready within 60s (log `{}`)", agent.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        agent.supervisor.stop().await;
        bail!(failure)
    }

    /// Both counters at one quiet moment. Prometheus counts a batch when it starts sending it (`samples_total` is
    /// added before each attempt), VictoriaMetrics once the batch has arrived, and VictoriaMetrics is read first: so
    /// `rows - sent` is never higher than when nothing is in flight, and lower by the batches in flight (a send can
    /// take a few hundred milliseconds). Of twelve tries over about a second the one with the highest `rows - sent`
    /// is kept: at low rates (a send a second) one of them falls between sends, at high rates it is the one with the
    /// least in flight.
    async fn reading(&self, agent: &Agent) -> anyhow::Result<Reading> {
        let mut best: Option<Reading> = None;
        for attempt in 0..12 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
            let cpu = self.cpu(agent);
            let at = Instant::now();
            let scrapes = self.targets.scrapes();
            let vm = get(&self.vm_addr, "/metrics").await?;
            let rows = metric_sum(&vm, "vm_rows_inserted_total")
                .context("VictoriaMetrics' /metrics has no vm_rows_inserted_total")?;
            let (queue, _) = agent.queue().await?;
            let reading = Reading { at, rows, queue, cpu, scrapes };
            if best.is_none_or(|b| reading.rows - reading.queue.samples_sent > b.rows - b.queue.samples_sent) {
                best = Some(reading);
            }
        }
        Ok(best.expect("twelve tries"))
    }

    /// One round of `path` at `series` series per target.
    async fn round(&self, path: Path, series: u64, number: u32) -> anyhow::Result<Round> {
        self.targets.set_series(series as usize);
        let agent = self.start_agent(path, &format!("{number:02}-{}", path.key())).await?;
        let result = self.measure(&agent, path, series, number).await;
        agent.supervisor.stop().await;
        result.with_context(|| format!("round {number} {} (agent log `{}`)", path.key(), agent.log.display()))
    }

    async fn measure(&self, agent: &Agent, path: Path, series: u64, number: u32) -> anyhow::Result<Round> {
        // The first send: the agent's discovery alone takes about 5 s (Prometheus applies targets every 5 s).
        let began = Instant::now();
        loop {
            if let Ok((q, _)) = agent.queue().await {
                if q.samples_sent > 0.0 {
                    break;
                }
                if q.samples_failed > 0.0 {
                    bail!(
                        "{:.0} samples failed before any was sent: the write path refuses the agent",
                        q.samples_failed
                    );
                }
            }
            if began.elapsed() > Duration::from_secs(60) {
                bail!("nothing sent within 60s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Then the warm-up, and until the queue has caught up with the backlog of its first seconds (one shard
        // at first; Prometheus reshards every 10 s): the newest sample sent within one scrape interval and one batch
        // deadline of the newest queued, three polls in a row. A queue that never catches up is measured anyway.
        let deadline = self.scratch.config.remote_write.batch_send_deadline;
        let caught_up_lag = (self.scrape_interval + deadline).as_secs_f64();
        tokio::time::sleep(self.warmup).await;
        let catch_up_began = Instant::now();
        let mut in_a_row = 0;
        while in_a_row < 3 && catch_up_began.elapsed() < MAX_CATCH_UP {
            match agent.queue().await {
                Ok((q, _)) if q.highest_timestamp - q.highest_sent_timestamp <= caught_up_lag => in_a_row += 1,
                _ => in_a_row = 0,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let warmed_up = began.elapsed().as_secs_f64();

        let start = self.reading(agent).await?;
        let end_at = start.at + self.window;
        let (mut pending, mut lags, mut shards_max) = (Vec::new(), Vec::new(), 0.0f64);
        loop {
            let left = end_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            if let Ok((q, text)) = agent.queue().await {
                pending.push(q.samples_pending);
                if q.highest_sent_timestamp > 0.0 {
                    lags.push((q.highest_timestamp - q.highest_sent_timestamp).max(0.0));
                }
                shards_max = shards_max.max(metric_sum(&text, "prometheus_remote_storage_shards").unwrap_or(0.0));
            }
        }
        let end = self.reading(agent).await?;

        let seconds = (end.at - start.at).as_secs_f64();
        let rows = end.rows - start.rows;
        let sent = end.queue.samples_sent - start.queue.samples_sent;
        let failed = end.queue.samples_failed - start.queue.samples_failed;
        let offered = self.offered(series);
        let per_scrape = f64::from(self.target_count) * (series + REPORT_SERIES) as f64;
        let quarter = (pending.len() / 4).max(1);
        let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        let pending_first = mean(&pending[..quarter.min(pending.len())]);
        let pending_last = mean(&pending[pending.len().saturating_sub(quarter)..]);
        let lag_max = lags.iter().copied().fold(0.0, f64::max);
        let lag_bound = 2.0 * (self.scrape_interval + deadline).as_secs_f64();
        let kept_up = !lags.is_empty() && lag_max <= lag_bound && pending_last - pending_first <= per_scrape;
        let delivered = if offered > 0.0 { rows / seconds / offered } else { 0.0 };
        let spent = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a).max(0.0));
        let used = PerProgram {
            victoria_metrics: spent(start.cpu.victoria_metrics, end.cpu.victoria_metrics),
            caddy: spent(start.cpu.caddy, end.cpu.caddy),
            prometheus_agent: spent(start.cpu.agent, end.cpu.agent),
            bench_targets: spent(start.cpu.bench, end.cpu.bench),
        };
        let machine = spent(start.cpu.machine, end.cpu.machine);
        let scale = |p: &PerProgram, by: f64| PerProgram {
            victoria_metrics: p.victoria_metrics.map(|v| v / by),
            caddy: p.caddy.map(|v| v / by),
            prometheus_agent: p.prometheus_agent.map(|v| v / by),
            bench_targets: p.bench_targets.map(|v| v / by),
        };
        let round = Round {
            round: number,
            path: path.key(),
            targets: self.target_count,
            series_per_target: series,
            offered_samples_per_second: offered,
            warmup_seconds: warmed_up,
            measured_seconds: seconds,
            target_scrapes_per_second: (end.scrapes - start.scrapes) as f64 / seconds,
            samples_per_second: rows / seconds,
            prometheus_sent_samples_per_second: sent / seconds,
            cross_check_difference: (rows > 0.0).then(|| (rows - sent).abs() / rows),
            delivered_share_of_offered: delivered,
            samples_failed: failed,
            queue: QueueFigures {
                kept_up,
                lag_max_seconds: lag_max,
                lag_median_seconds: median_f64(&mut lags.clone()).unwrap_or(0.0),
                lag_bound_seconds: lag_bound,
                pending_first_quarter: pending_first,
                pending_last_quarter: pending_last,
                pending_max: pending.iter().copied().fold(0.0, f64::max),
                shards_max,
            },
            cpu_seconds_per_million_samples: if rows > 0.0 { scale(&used, rows / 1e6) } else { PerProgram::default() },
            cores: scale(&used, seconds),
            machine_busy_cores: machine.map(|m| m / seconds),
            other_busy_cores: machine.map(|m| {
                let ours = [used.victoria_metrics, used.caddy, used.prometheus_agent, used.bench_targets];
                ((m - ours.iter().flatten().sum::<f64>()) / seconds).max(0.0)
            }),
            sustained: kept_up && failed == 0.0 && delivered >= SUSTAINED_SHARE,
        };
        eprintln!(
            "round {number} {:<12} {:>6} series/target: {:>9.0} samples/s (Prometheus sent {:>9.0}, offered {:>9.0}); \
             queue {}, lag max {:.1}s, shards {:.0}; CPU-s per million: VictoriaMetrics {}, Caddy {}, agent {}; \
             other jobs {} cores",
            path.key(),
            series,
            round.samples_per_second,
            round.prometheus_sent_samples_per_second,
            offered,
            if kept_up { "kept up" } else { "fell behind" },
            lag_max,
            shards_max,
            show(round.cpu_seconds_per_million_samples.victoria_metrics),
            show(round.cpu_seconds_per_million_samples.caddy),
            show(round.cpu_seconds_per_million_samples.prometheus_agent),
            show(round.other_busy_cores),
        );
        Ok(round)
    }
}

fn show(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn median_of(rounds: &[&Round], f: impl Fn(&Round) -> Option<f64>) -> Option<f64> {
    median_f64(&mut rounds.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
}

fn summary(rounds: &[&Round]) -> PathSummary {
    let per_program = |f: &dyn Fn(&Round) -> &PerProgram| PerProgram {
        victoria_metrics: median_of(rounds, |r| f(r).victoria_metrics),
        caddy: median_of(rounds, |r| f(r).caddy),
        prometheus_agent: median_of(rounds, |r| f(r).prometheus_agent),
        bench_targets: median_of(rounds, |r| f(r).bench_targets),
    };
    PathSummary {
        rounds: rounds.len(),
        rounds_kept_up: rounds.iter().filter(|r| r.queue.kept_up).count(),
        rounds_sustained: rounds.iter().filter(|r| r.sustained).count(),
        samples_per_second: median_of(rounds, |r| Some(r.samples_per_second)).unwrap_or(0.0),
        prometheus_sent_samples_per_second: median_of(rounds, |r| Some(r.prometheus_sent_samples_per_second))
            .unwrap_or(0.0),
        cross_check_difference_max: rounds.iter().filter_map(|r| r.cross_check_difference).reduce(f64::max),
        lag_max_seconds: rounds.iter().map(|r| r.queue.lag_max_seconds).fold(0.0, f64::max),
        cpu_seconds_per_million_samples: per_program(&|r| &r.cpu_seconds_per_million_samples),
        cores: per_program(&|r| &r.cores),
        other_busy_cores_max: rounds.iter().filter_map(|r| r.other_busy_cores).reduce(f64::max),
    }
}

/// `--max` for one path: the rate steps and where it stopped keeping up.
#[derive(Debug, Clone, Default, Serialize)]
struct MaxSearch {
    /// The highest rate VictoriaMetrics received in a sustained step.
    highest_sustained_samples_per_second: Option<f64>,
    highest_sustained_series_per_target: Option<u64>,
    /// The offered rate of the lowest step that was not sustained.
    first_unsustained_offered_samples_per_second: Option<f64>,
    steps: Vec<Round>,
    #[serde(skip)]
    good: Option<u64>,
    #[serde(skip)]
    bad: Option<u64>,
    #[serde(skip)]
    bisections: u32,
}

impl MaxSearch {
    /// The next series per target to try, `None` when the search is over.
    fn next(&self, start: u64) -> Option<u64> {
        if self.steps.len() as u32 >= MAX_STEPS {
            return None;
        }
        match (self.good, self.bad) {
            (None, None) => Some(start),
            (Some(good), None) => Some(((good as f64) * MAX_STEP).ceil() as u64),
            (None, Some(bad)) => (bad > 1).then_some(bad / 2),
            (Some(good), Some(bad)) => {
                let mid = ((good as f64) * (bad as f64)).sqrt().round() as u64;
                (self.bisections < MAX_BISECTIONS && mid > good && mid < bad).then_some(mid)
            }
        }
    }

    fn record(&mut self, round: Round) {
        if self.good.is_some() && self.bad.is_some() {
            self.bisections += 1;
        }
        let series = round.series_per_target;
        if round.sustained {
            self.good = Some(self.good.map_or(series, |g| g.max(series)));
            if self.highest_sustained_samples_per_second.is_none_or(|h| round.samples_per_second > h) {
                self.highest_sustained_samples_per_second = Some(round.samples_per_second);
                self.highest_sustained_series_per_target = Some(series);
            }
        } else {
            self.bad = Some(self.bad.map_or(series, |b| b.min(series)));
            let offered = round.offered_samples_per_second;
            if self.first_unsustained_offered_samples_per_second.is_none_or(|f| offered < f) {
                self.first_unsustained_offered_samples_per_second = Some(offered);
            }
        }
        self.steps.push(round);
    }
}

/// Runs the ingest benchmark.
pub async fn ingest(settings: &Settings, args: &BenchIngestArgs) -> anyhow::Result<u8> {
    for (flag, value) in
        [("--rounds", args.rounds), ("--targets", args.targets), ("--series-per-target", args.series_per_target)]
    {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let scratch = scratch_settings(dir.path(), settings, args.scrape_interval, None)?;
    let prometheus = Program::Prometheus.locate(scratch.config.local.prometheus_binary.as_deref(), &scratch.env)?;
    let release = versions::detect_supported(Program::Prometheus, &prometheus)?;
    let targets =
        SyntheticTargets::start(args.series_per_target as usize).context("cannot start the synthetic targets")?;

    let sink = RunningSink::start(&scratch, false).await?;
    if let Err(err) = sink.wait_healthy(Duration::from_secs(60), |_| {}).await {
        sink.stop().await;
        return Err(err.into());
    }
    let state = sink.state();
    let component = |name| state.components.iter().find(|c| c.name == name);
    let vm_port = scratch.config.sink.victoria_metrics.port;
    let outcome = async {
        let password_file = writer_password_file(&scratch);
        writer_password(&scratch)?;
        let bench = Bench {
            scratch: &scratch,
            dir: dir.path().to_owned(),
            prometheus,
            agent_flag: versions::prometheus_agent_flag(&release),
            targets,
            target_count: args.targets,
            scrape_interval: args.scrape_interval,
            labels: BTreeMap::from([
                (RUN_LABEL.to_owned(), format!("bench-ingest-{}", std::process::id())),
                (EXPERIMENT_LABEL.to_owned(), "bench-ingest".to_owned()),
            ]),
            writer: scratch.config.sink.writer_username(),
            writer_password_file: password_file.to_string_lossy().into_owned(),
            vm_addr: format!("127.0.0.1:{vm_port}"),
            direct_url: format!("http://127.0.0.1:{vm_port}/api/v1/write"),
            sink_url: sink.prepared().urls.remote_write_url.clone(),
            vm_pid: component(ComponentName::VictoriaMetrics).and_then(|c| c.pid),
            caddy_pid: component(ComponentName::Caddy).and_then(|c| c.pid),
            warmup: args.warmup,
            window: args.round_duration,
        };
        if args.max { run_max(&bench, args).await } else { run_rounds(&bench, args).await }
    }
    .await;
    let versions: BTreeMap<String, String> = state
        .components
        .iter()
        .filter_map(|c| c.version.clone().map(|v| (c.name.as_str().to_owned(), v)))
        .chain((release != Release::Unknown).then(|| ("prometheus".to_owned(), release.describe())))
        .collect();
    sink.stop().await;
    let mut report = outcome?;
    let rw = &scratch.config.remote_write;
    let head = serde_json::json!({
        "targets": args.targets,
        "series_per_target": args.series_per_target,
        "scrape_interval_seconds": args.scrape_interval.as_secs_f64(),
        "offered_samples_per_second":
            f64::from(args.targets) * (u64::from(args.series_per_target) + REPORT_SERIES) as f64
                / args.scrape_interval.as_secs_f64(),
        "round_seconds": args.round_duration.as_secs_f64(),
        "warmup_seconds": args.warmup.as_secs_f64(),
        "mode": if args.max { "max" } else { "rounds" },
        "versions": versions,
        "queue_config": {
            "capacity": rw.capacity,
            "max_samples_per_send": rw.max_samples_per_send,
            "batch_send_deadline_seconds": rw.batch_send_deadline.as_secs_f64(),
            "max_shards": rw.max_shards,
            "min_backoff_seconds": rw.min_backoff.as_secs_f64(),
            "max_backoff_seconds": rw.max_backoff.as_secs_f64(),
        },
    });
    if let (Some(report), Some(head)) = (report.as_object_mut(), head.as_object()) {
        for (k, v) in head {
            report.insert(k.clone(), v.clone());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report, args);
    }
    Ok(exit::OK)
}

/// `--rounds` rounds per path, alternating which path goes first.
async fn run_rounds(bench: &Bench<'_>, args: &BenchIngestArgs) -> anyhow::Result<serde_json::Value> {
    let series = u64::from(args.series_per_target);
    let mut rounds = Vec::new();
    for number in 1..=args.rounds {
        let order = if number % 2 == 1 { [Path::Direct, Path::Sink] } else { [Path::Sink, Path::Direct] };
        for path in order {
            rounds.push(bench.round(path, series, number).await?);
        }
    }
    let of = |path: Path| rounds.iter().filter(|r| r.path == path.key()).collect::<Vec<_>>();
    let (direct, sink) = (summary(&of(Path::Direct)), summary(&of(Path::Sink)));
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    let per_round_ratio = median_f64(
        &mut (1..=args.rounds)
            .filter_map(|n| {
                let pick = |p: Path| rounds.iter().find(|r| r.round == n && r.path == p.key());
                ratio(pick(Path::Sink)?.samples_per_second, pick(Path::Direct)?.samples_per_second)
            })
            .collect::<Vec<_>>(),
    );
    let sink_vs_direct = ratio(sink.samples_per_second, direct.samples_per_second);
    let all_kept_up = direct.rounds_kept_up == direct.rounds && sink.rounds_kept_up == sink.rounds;
    Ok(serde_json::json!({
        "rounds": args.rounds,
        "paths": { "direct": direct, "through_sink": sink },
        "ratios": {
            "samples_per_second_through_sink_vs_direct": sink_vs_direct,
            "samples_per_second_through_sink_vs_direct_median_of_rounds": per_round_ratio,
            "victoria_metrics_cpu_per_million_through_sink_vs_direct": sink
                .cpu_seconds_per_million_samples
                .victoria_metrics
                .zip(direct.cpu_seconds_per_million_samples.victoria_metrics)
                .and_then(|(s, d)| ratio(s, d)),
        },
        "goal": {
            "through_sink_vs_direct_at_least": SUSTAINED_SHARE,
            "met": all_kept_up && sink_vs_direct.is_some_and(|r| r >= SUSTAINED_SHARE),
        },
        "per_round": rounds,
    }))
}

/// `--max`: per path, raise the series per target by x1.5 until a step is not sustained, then bisect.
async fn run_max(bench: &Bench<'_>, args: &BenchIngestArgs) -> anyhow::Result<serde_json::Value> {
    let start = u64::from(args.series_per_target);
    let (mut direct, mut sink) = (MaxSearch::default(), MaxSearch::default());
    let mut number = 0;
    loop {
        number += 1;
        let order = if number % 2 == 1 { [Path::Direct, Path::Sink] } else { [Path::Sink, Path::Direct] };
        let mut ran = false;
        for path in order {
            let search = match path {
                Path::Direct => &mut direct,
                Path::Sink => &mut sink,
            };
            if let Some(series) = search.next(start) {
                search.record(bench.round(path, series, number).await?);
                ran = true;
            }
        }
        if !ran {
            break;
        }
    }
    let ratio =
        direct.highest_sustained_samples_per_second.zip(sink.highest_sustained_samples_per_second).map(|(d, s)| s / d);
    Ok(serde_json::json!({
        "max": {
            "direct": direct,
            "through_sink": sink,
            "highest_sustained_through_sink_vs_direct": ratio,
        },
    }))
}

fn print_text(report: &serde_json::Value, args: &BenchIngestArgs) {
    let f = |v: &serde_json::Value| v.as_f64();
    let num = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into());
    println!(
        "{} targets x {} series every {} = {:.0} samples/s offered; Prometheus {}, VictoriaMetrics {}, Caddy {}",
        args.targets,
        args.series_per_target,
        humantime::format_duration(args.scrape_interval),
        f(&report["offered_samples_per_second"]).unwrap_or(0.0),
        report["versions"]["prometheus"].as_str().unwrap_or("?"),
        report["versions"]["victoria-metrics"].as_str().unwrap_or("?"),
        report["versions"]["caddy"].as_str().unwrap_or("?"),
    );
    let q = &report["queue_config"];
    println!(
        "queue as greenflow renders it: capacity {}, max_samples_per_send {}, batch_send_deadline {}s, max_shards {}",
        q["capacity"], q["max_samples_per_send"], q["batch_send_deadline_seconds"], q["max_shards"]
    );
    if args.max {
        let m = &report["max"];
        println!("highest sustained rate (one {}s round per step)", args.round_duration.as_secs());
        for (key, label) in [("direct", "straight into VictoriaMetrics"), ("through_sink", "through the sink")] {
            println!(
                "  {label:<30} {:>9} samples/s  (first step not sustained: {} offered)",
                num(f(&m[key]["highest_sustained_samples_per_second"]), 0),
                num(f(&m[key]["first_unsustained_offered_samples_per_second"]), 0),
            );
        }
        println!("  through the sink vs direct     {:>9}x", num(f(&m["highest_sustained_through_sink_vs_direct"]), 3));
        return;
    }
    println!(
        "medians of {} rounds of {}s per path (after a {}s warm-up)",
        args.rounds,
        args.round_duration.as_secs(),
        args.warmup.as_secs()
    );
    let (d, s) = (&report["paths"]["direct"], &report["paths"]["through_sink"]);
    println!("  {:<44} {:>14} {:>16}", "", "direct", "through the sink");
    let row = |label: &str, a: Option<f64>, b: Option<f64>, digits: usize| {
        println!("  {label:<44} {:>14} {:>16}", num(a, digits), num(b, digits));
    };
    row("samples/s (VictoriaMetrics' vm_rows_inserted)", f(&d["samples_per_second"]), f(&s["samples_per_second"]), 0);
    row(
        "samples/s (Prometheus' samples_total)",
        f(&d["prometheus_sent_samples_per_second"]),
        f(&s["prometheus_sent_samples_per_second"]),
        0,
    );
    row("largest cross-check difference", f(&d["cross_check_difference_max"]), f(&s["cross_check_difference_max"]), 4);
    println!(
        "  {:<44} {:>14} {:>16}",
        "rounds the queue kept up",
        format!("{}/{}", d["rounds_kept_up"], d["rounds"]),
        format!("{}/{}", s["rounds_kept_up"], s["rounds"])
    );
    row("highest queue lag (s)", f(&d["lag_max_seconds"]), f(&s["lag_max_seconds"]), 2);
    for (key, label) in [
        ("victoria_metrics", "VictoriaMetrics"),
        ("caddy", "Caddy"),
        ("prometheus_agent", "Prometheus agent"),
        ("bench_targets", "synthetic targets"),
    ] {
        row(
            &format!("CPU-s per million samples: {label}"),
            f(&d["cpu_seconds_per_million_samples"][key]),
            f(&s["cpu_seconds_per_million_samples"][key]),
            3,
        );
    }
    row("other jobs' CPU, highest round (cores)", f(&d["other_busy_cores_max"]), f(&s["other_busy_cores_max"]), 2);
    println!(
        "  through the sink vs direct: {}x samples/s (median of per-round ratios {}x)",
        num(f(&report["ratios"]["samples_per_second_through_sink_vs_direct"]), 3),
        num(f(&report["ratios"]["samples_per_second_through_sink_vs_direct_median_of_rounds"]), 3),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(series: u64, sustained: bool) -> Round {
        Round {
            round: 1,
            path: "direct",
            targets: 1,
            series_per_target: series,
            offered_samples_per_second: series as f64,
            warmup_seconds: 1.0,
            measured_seconds: 1.0,
            target_scrapes_per_second: 1.0,
            samples_per_second: series as f64,
            prometheus_sent_samples_per_second: series as f64,
            cross_check_difference: Some(0.0),
            delivered_share_of_offered: 1.0,
            samples_failed: 0.0,
            queue: QueueFigures {
                kept_up: sustained,
                lag_max_seconds: 0.0,
                lag_median_seconds: 0.0,
                lag_bound_seconds: 4.0,
                pending_first_quarter: 0.0,
                pending_last_quarter: 0.0,
                pending_max: 0.0,
                shards_max: 1.0,
            },
            cpu_seconds_per_million_samples: PerProgram::default(),
            cores: PerProgram::default(),
            machine_busy_cores: None,
            other_busy_cores: None,
            sustained,
        }
    }

    #[test]
    fn max_search_grows_then_bisects() {
        let mut search = MaxSearch::default();
        let limit = 5000;
        let mut tried = Vec::new();
        while let Some(series) = search.next(2000) {
            tried.push(series);
            search.record(round(series, series <= limit));
        }
        assert_eq!(&tried[..3], &[2000, 3000, 4500]);
        assert_eq!(tried, [2000, 3000, 4500, 6750, 5511, 4980]);
        assert_eq!(search.highest_sustained_series_per_target, tried.iter().copied().filter(|s| *s <= limit).max());
        assert!(search.first_unsustained_offered_samples_per_second.is_some());
    }

    #[test]
    fn max_search_goes_down_when_the_first_step_falls_behind() {
        let mut search = MaxSearch::default();
        let mut tried = Vec::new();
        while let Some(series) = search.next(2000) {
            tried.push(series);
            search.record(round(series, series <= 600));
        }
        assert_eq!(tried, [2000, 1000, 500, 707, 595]);
        assert_eq!(search.highest_sustained_series_per_target, Some(595));
    }
}
