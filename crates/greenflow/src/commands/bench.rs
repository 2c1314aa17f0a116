//! `greenflow bench startup`: how long the sink takes to report healthy and how long a new run's first sample takes
//! to become visible; `greenflow bench drain`: freshness during a run and drain time after it. Each figure comes with
//! a baseline measured in the same run on the same binaries.
//!
//! Everything runs in a temporary directory on free loopback ports; the user's sink and data are not touched.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_runs::{LocalCluster, RUN_LABEL, RunId};
use greenflow_sink::{Program, RunningSink, SinkClient, promql_string, sink_password};
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::{BenchDrainArgs, BenchStartupArgs};
use crate::exit;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A throw-away project: its own config, data and state under a temporary directory.
fn scratch_settings(dir: &std::path::Path, template: &Settings) -> anyhow::Result<Settings> {
    let config = format!(
        "sink:\n  http_port: {}\n  victoria_metrics:\n    port: {}\n  caddy:\n    admin_port: {}\n  grafana:\n    \
         enabled: false\nlocal:\n  scrape_interval: {}ms\n",
        free_port()?,
        free_port()?,
        free_port()?,
        template.config.local.scrape_interval.as_millis()
    );
    std::fs::write(dir.join("greenflow.yaml"), config)?;
    let mut env: Vec<(String, String)> =
        ["PATH", "HOME"].iter().filter_map(|k| template.env.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
    env.push(("XDG_DATA_HOME".into(), dir.join("data").display().to_string()));
    env.push(("XDG_STATE_HOME".into(), dir.join("state").display().to_string()));
    Ok(Settings::load(None, dir, env)?)
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
        let scratch = scratch_settings(dir.path(), settings)?;
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

/// A reporter that keeps quiet: the benchmark prints its own lines.
struct Quiet;

impl greenflow_runs::Reporter for Quiet {
    fn phase(&self, _: &str) {}
    fn update(&self, _: &str) {}
    fn note(&self, _: &str) {}
}

/// One whole run named `name` on the local back-end writing to `write_url`, read through `client`: the drain time
/// from the record, and the ages of the newest visible sample polled every 250 ms during the run.
async fn measured_run(
    settings: &Settings,
    name: &str,
    write_url: &str,
    client: &SinkClient,
    password: &greenflow_config::Secret,
    duration: Duration,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    use greenflow_runs::lifecycle::{self, RunContext};
    use greenflow_runs::{DrainOutcome, Interrupts, LocalBackend, RunStore, Workload};

    let mut backend = LocalBackend::new(settings, write_url, &settings.config.sink.username, password.clone());
    let request =
        crate::commands::run::request(settings, name, Workload::For(duration), greenflow_runs::BackendKind::Local);
    let (_stop, interrupts) = Interrupts::manual();
    let mut ctx = RunContext {
        sink: client.clone(),
        // The agent writes as `client` does; the writer's own check belongs to real runs.
        writer: None,
        store: RunStore::new(settings.paths.runs_dir()),
        reporter: &Quiet,
        interrupts,
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let done = std::sync::Arc::clone(&done);
        let client = client.clone();
        let query = format!("max(tlast_over_time({{greenflow_experiment={}}}[1m]))", promql_string(name));
        tokio::spawn(async move {
            let mut ages = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(Some(newest)) = client.query_value(&query).await {
                    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
                    ages.push(Duration::from_secs_f64((now - newest).max(0.0)));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            ages
        })
    };
    let record = lifecycle::run(&mut backend, &mut ctx, &request).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let ages = poller.await.unwrap_or_default();
    let record = record?;
    let drain = record.drain.context("the run has no drain result")?;
    if drain.outcome != DrainOutcome::Drained {
        bail!("run {} did not drain: {}", record.id, drain.detail.unwrap_or_default());
    }
    Ok((Duration::from_secs_f64(drain.seconds), ages))
}

/// Runs the freshness and drain benchmark.
pub async fn drain(settings: &Settings, args: &BenchDrainArgs) -> anyhow::Result<u8> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let scratch = scratch_settings(dir.path(), settings)?;
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
        let (mut drain_direct, mut drain_sink, mut fresh_direct, mut fresh_sink) = (vec![], vec![], vec![], vec![]);
        for run in 1..=args.runs {
            let (d, mut ages) =
                measured_run(&scratch, &format!("bench-{run}-direct"), &format!("{vm_url}/api/v1/write"), &direct_client, &password, args.duration).await?;
            drain_direct.push(d);
            let fd = median(&mut ages);
            fresh_direct.push(fd);
            let (s, mut ages) =
                measured_run(&scratch, &format!("bench-{run}-sink"), &urls.remote_write_url, &sink_client, &password, args.duration).await?;
            drain_sink.push(s);
            let fs = median(&mut ages);
            fresh_sink.push(fs);
            eprintln!(
                "run {run}/{}: drain direct {:.2}s, through the sink {:.2}s; freshness direct {:.2}s, through the sink {:.2}s",
                args.runs,
                d.as_secs_f64(),
                s.as_secs_f64(),
                fd.as_secs_f64(),
                fs.as_secs_f64()
            );
        }
        anyhow::Ok((median(&mut drain_direct), median(&mut drain_sink), median(&mut fresh_direct), median(&mut fresh_sink)))
    }
    .await;
    sink.stop().await;
    let (drain_direct, drain_sink, fresh_direct, fresh_sink) = outcome?;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let deadline = settings.config.remote_write.batch_send_deadline;
    if args.json {
        let value = json!({
            "runs": args.runs,
            "run_seconds": args.duration.as_secs_f64(),
            "scrape_interval_seconds": settings.config.local.scrape_interval.as_secs_f64(),
            "batch_send_deadline_seconds": deadline.as_secs_f64(),
            "median_seconds": {
                "freshness_direct": fresh_direct.as_secs_f64(),
                "freshness_through_sink": fresh_sink.as_secs_f64(),
                "drain_direct": drain_direct.as_secs_f64(),
                "drain_through_sink": drain_sink.as_secs_f64(),
            },
            "ratios": {
                "freshness_through_sink_vs_direct": ratio(fresh_sink, fresh_direct),
                "drain_through_sink_vs_direct": ratio(drain_sink, drain_direct),
                "drain_through_sink_vs_batch_send_deadline": ratio(drain_sink, deadline),
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("medians of {} runs of {} each", args.runs, humantime::format_duration(args.duration));
        println!(
            "  freshness (newest visible sample's age)  {:>6.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s)",
            fresh_sink.as_secs_f64(),
            ratio(fresh_sink, fresh_direct),
            fresh_direct.as_secs_f64()
        );
        println!(
            "  drain (run end to drained)               {:>6.2}s  ({:.2}x straight into VictoriaMetrics: {:.2}s; \
             {:.2}x the batch deadline {:.0}s)",
            drain_sink.as_secs_f64(),
            ratio(drain_sink, drain_direct),
            drain_direct.as_secs_f64(),
            ratio(drain_sink, deadline),
            deadline.as_secs_f64()
        );
    }
    Ok(exit::OK)
}
