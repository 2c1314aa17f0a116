//! `greenflow demo`: the sink (started here unless it runs), a stand-in cluster writing into it, live counts, and a
//! run record.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_runs::{
    LocalCluster, RUN_FORMAT_VERSION, RUN_LABEL, RunId, RunRecord, RunStatus, RunStore, validate_name,
};
use greenflow_sink::{SinkClient, loopback_urls, promql_string, running_supervisor, sink_password};
use time::OffsetDateTime;

use crate::cli::DemoArgs;
use crate::commands::sink::{start_sink, wait_healthy};
use crate::exit;
use crate::signals::StopRequests;
use crate::ui::{Progress, human_duration};

/// Live figures of a run, read from the sink.
struct Counts {
    series: u64,
    samples: u64,
    lag: Option<Duration>,
}

async fn counts(client: &SinkClient, selector: &str, since: Instant) -> anyhow::Result<Counts> {
    let window = since.elapsed().as_secs() + 60;
    let series = client.query_value(&format!("count({selector})")).await?.unwrap_or(0.0);
    let samples = client.query_value(&format!("sum(count_over_time({selector}[{window}s]))")).await?.unwrap_or(0.0);
    let newest = client.query_value(&format!("max(timestamp({selector}))")).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let lag = newest.map(|t| Duration::from_secs_f64((now - t).max(0.0)));
    Ok(Counts { series: series as u64, samples: samples as u64, lag })
}

/// Runs the demo until `--for` elapses or Ctrl-C.
pub async fn run(settings: &Settings, args: &DemoArgs) -> anyhow::Result<u8> {
    validate_name(&args.name)?;
    let mut stop = StopRequests::install(false)?;
    let began = Instant::now();

    // The sink: the running one, or one started (and later stopped) here.
    let own_sink = if running_supervisor(settings).is_some() {
        eprintln!("using the running sink");
        None
    } else {
        let sink =
            start_sink(settings, false).await?.context("the sink started elsewhere meanwhile; run the demo again")?;
        if let Err(err) = wait_healthy(&sink, Duration::from_secs(60)).await {
            sink.stop().await;
            return Err(err);
        }
        Some(sink)
    };
    let result = run_with_sink(settings, args, &mut stop, began).await;
    if let Some(sink) = own_sink {
        eprintln!("stopping the sink this demo started ...");
        sink.stop().await;
        eprintln!("data kept in {}; `greenflow sink up` serves it again", settings.paths.data_dir.display());
    }
    result
}

async fn run_with_sink(
    settings: &Settings,
    args: &DemoArgs,
    stop: &mut StopRequests,
    began: Instant,
) -> anyhow::Result<u8> {
    let urls = loopback_urls(settings);
    let username = settings.config.sink.username.clone();
    let password = sink_password(settings)?;
    let start = OffsetDateTime::now_utc();
    let id = RunId::new(start);
    let plan = LocalCluster::plan(settings, &id, &args.name, &urls.remote_write_url, &username, &password)?;
    let store = RunStore::new(settings.paths.runs_dir());
    let mut versions = plan.versions.clone();
    versions.insert("greenflow".into(), env!("CARGO_PKG_VERSION").into());
    let mut record = RunRecord {
        format_version: RUN_FORMAT_VERSION,
        id: id.clone(),
        name: args.name.clone(),
        status: RunStatus::Running,
        backend: "local".into(),
        start,
        end: None,
        labels: plan.labels.clone(),
        series: None,
        samples: None,
        versions,
    };
    let record_path = store.save(&record)?;
    eprintln!("run {id} ({}) started; record: {}", args.name, record_path.display());
    let cluster = LocalCluster::start(plan).await?;

    let client = SinkClient::new(urls.query_url.clone(), Some((username, password)));
    let selector = format!("{{{RUN_LABEL}={}}}", promql_string(id.as_str()));
    let outcome = observe(&client, &urls.grafana_url, &selector, args, stop, began).await;

    eprintln!("stopping the stand-in cluster (flushing its queue) ...");
    cluster.stop().await;
    record.end = Some(OffsetDateTime::now_utc());
    let final_counts = counts(&client, &selector, began).await.ok();
    record.series = final_counts.as_ref().map(|c| c.series);
    record.samples = final_counts.as_ref().map(|c| c.samples);
    record.status = match &outcome {
        Ok(()) => RunStatus::Complete,
        Err(_) => RunStatus::Failed,
    };
    store.save(&record)?;
    outcome?;
    let duration = record.end.map(|end| end - record.start).unwrap_or_default();
    println!(
        "run {id}: {} series, {} samples in {}; `greenflow runs show {id}`",
        record.series.unwrap_or(0),
        record.samples.unwrap_or(0),
        human_duration(duration.try_into().unwrap_or_default()),
    );
    Ok(exit::OK)
}

/// Waits for the first sample, prints the URLs, then a live line until the duration ends or Ctrl-C.
async fn observe(
    client: &SinkClient,
    grafana_url: &str,
    selector: &str,
    args: &DemoArgs,
    stop: &mut StopRequests,
    began: Instant,
) -> anyhow::Result<()> {
    let progress = Progress::start("waiting for the first sample to reach the sink");
    let deadline = Instant::now() + args.timeout;
    let mut last_error = None;
    loop {
        if let Err(err) = client.force_flush().await {
            tracing::debug!(error = %err, "flush failed");
        }
        match client.query_value(&format!("count({selector})")).await {
            Ok(Some(n)) if n > 0.0 => break,
            Ok(_) => {}
            Err(err) => last_error = Some(err.to_string()),
        }
        if Instant::now() >= deadline {
            progress.finish();
            bail!(
                "no sample of this run reached the sink within {}{}; see the logs under the state directory",
                human_duration(args.timeout),
                last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.wait(1) => { progress.finish(); bail!("interrupted before the first sample arrived"); }
        }
    }
    progress.finish();
    eprintln!("first sample in the sink {} after start", human_duration(began.elapsed()));
    println!("query API:  {}  (selector {selector})", client.base());
    println!("Grafana:    {grafana_url}");

    let observed_since = Instant::now();
    let until = args.duration.map(|d| observed_since + d);
    let mut live = Progress::start("counting");
    loop {
        if let Ok(c) = counts(client, selector, began).await {
            live.set(&format!(
                "{} series, {} samples, lag {}",
                c.series,
                c.samples,
                c.lag.map(human_duration).unwrap_or_else(|| "?".into())
            ));
        }
        let sleep = match until {
            Some(until) if Instant::now() >= until => break,
            Some(until) => until.saturating_duration_since(Instant::now()).min(Duration::from_secs(2)),
            None => Duration::from_secs(2),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.wait(1) => break,
        }
    }
    live.finish();
    Ok(())
}
