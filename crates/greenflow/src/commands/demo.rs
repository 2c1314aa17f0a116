//! `greenflow demo`: the sink (started here unless it runs) and a run on the `local` back-end, so the whole path
//! shows working: stand-in cluster, remote write through Caddy with auth, VictoriaMetrics, drain, record.

use std::time::Duration;

use anyhow::Context;
use greenflow_config::Settings;
use greenflow_runs::{BackendKind, Workload, validate_name};
use greenflow_sink::{SinkPresence, loopback_urls, sink_presence};

use crate::cli::DemoArgs;
use crate::commands::run::{drive, local_backend, request};
use crate::commands::sink::{start_sink, wait_healthy};

/// Runs the demo until `--for` elapses or Ctrl-C.
pub async fn run(settings: &Settings, args: &DemoArgs) -> anyhow::Result<u8> {
    validate_name(&args.name)?;
    // The stand-in cluster's programs before the sink: a missing Prometheus is said before anything starts.
    greenflow_runs::check_local_programs(settings)?;
    // The sink: the running one, or one started (and later stopped) here.
    let own_sink = if sink_presence(settings).await != SinkPresence::Absent {
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
    let result = run_with_sink(settings, args).await;
    if let Some(sink) = own_sink {
        eprintln!("stopping the sink this demo started ...");
        sink.stop().await;
        eprintln!("data kept in {}; `greenflow sink up` serves it again", settings.paths.data_dir.display());
    }
    result
}

async fn run_with_sink(settings: &Settings, args: &DemoArgs) -> anyhow::Result<u8> {
    let urls = loopback_urls(settings);
    println!("query API:  {}  (select a run with {{greenflow_run=\"<id>\"}})", urls.query_url);
    println!("Grafana:    {}", urls.grafana_url);
    let (mut backend, sink) = local_backend(settings)?;
    let workload = match args.duration {
        Some(d) => Workload::For(d),
        None => Workload::UntilInterrupted,
    };
    let mut request = request(settings, &args.name, workload, BackendKind::Local);
    request.first_sample_timeout = args.timeout;
    request.ready_timeout = Duration::from_secs(60);
    drive(settings, &mut backend, sink, &request).await
}
