//! `greenflow bench report`: the report of a long run, against the baseline a researcher reached for before it:
//! downloading the run's samples (`/api/v1/export`) to compute figures in a notebook. Both on the same bare
//! VictoriaMetrics holding a synthetic run shaped like a cluster's: node-exporter's series per node (CPU per core
//! and mode, memory, network, disk, and a thousand others, as node-exporter exposes), Kepler's zones and a work
//! counter, every 5 s (the cluster's default scrape).

use std::time::{Duration, Instant};

use anyhow::Context;
use greenflow_config::{ReportConfig, Settings, WorkConfig};
use greenflow_data::series::{Labels, ValueSpelling, render_line};
use greenflow_report::{Idle, ReportRequest, RunInput};
use greenflow_sink::{Program, SinkClient};
use serde_json::json;

use super::data::{BareVm, post};
use super::median_f64;
use crate::cli::BenchReportArgs;
use crate::exit;

/// The synthetic run's scrape interval, as `cluster.scrape_interval` defaults.
const SCRAPE_SECONDS: i64 = 5;

/// Series per node other than those the report reads, so the run is as large as a real node-exporter's.
const OTHER_SERIES_PER_NODE: usize = 1000;

/// A synthetic series: its labels and its value at t seconds into the run.
type Series = (Labels, Box<dyn Fn(f64) -> f64>);

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// Loads the run into `vm`; returns its samples.
async fn load(vm: &BareVm, id: &str, nodes: usize, from_ms: i64, points: i64) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let mut body = String::new();
    let mut samples = 0u64;
    let stamps: Vec<i64> = (0..points).map(|p| from_ms + p * SCRAPE_SECONDS * 1000).collect();
    for node in 0..nodes {
        let instance = format!("node-{node}:9100");
        let mut series: Vec<Series> = Vec::new();
        let base = |name: &str| {
            vec![("__name__", name.to_owned()), ("greenflow_run", id.to_owned()), ("instance", instance.clone())]
        };
        for cpu in 0..8 {
            for (mode, share) in [("idle", 0.6), ("user", 0.25), ("system", 0.1), ("iowait", 0.05)] {
                let mut l = base("node_cpu_seconds_total");
                l.extend([("cpu", cpu.to_string()), ("mode", mode.to_owned())]);
                series.push((labels(&l), Box::new(move |t| 1e5 + share * t)));
            }
        }
        series.push((labels(&base("node_memory_MemTotal_bytes")), Box::new(|_| 64e9)));
        series.push((labels(&base("node_memory_MemAvailable_bytes")), Box::new(|t| 40e9 + (t * 0.01).sin() * 1e9)));
        for (metric, rate) in [
            ("node_network_receive_bytes_total", 1e7),
            ("node_network_transmit_bytes_total", 2e7),
            ("node_disk_read_bytes_total", 3e6),
            ("node_disk_written_bytes_total", 5e6),
        ] {
            let mut l = base(metric);
            l.push(("device", if metric.contains("network") { "eth0" } else { "nvme0n1" }.to_owned()));
            series.push((labels(&l), Box::new(move |t| 1e9 + rate * t)));
        }
        for (zone, watts) in [("package", 120.0), ("dram", 15.0)] {
            let mut l = base("kepler_node_cpu_joules_total");
            l.push(("zone", zone.to_owned()));
            series.push((labels(&l), Box::new(move |t| 1e6 + watts * t)));
            let mut l = base("kepler_node_cpu_watts");
            l.push(("zone", zone.to_owned()));
            series.push((labels(&l), Box::new(move |_| watts)));
        }
        series.push((labels(&base("experiment_messages_total")), Box::new(|t| 1e6 + 5000.0 * t)));
        for other in 0..OTHER_SERIES_PER_NODE {
            series.push((
                labels(&base(&format!("node_other_{}", other % 100)))
                    .into_iter()
                    .chain([("index".to_owned(), other.to_string())])
                    .collect(),
                Box::new(move |t| other as f64 + t),
            ));
        }
        for (l, value) in series {
            let points: Vec<(i64, f64)> =
                stamps.iter().map(|ms| (*ms, value((*ms - from_ms) as f64 / 1000.0))).collect();
            samples += points.len() as u64;
            body.push_str(&render_line(&l, &points, ValueSpelling::Import));
            body.push('\n');
            if body.len() > 8 << 20 {
                post(&http, &vm.url, std::mem::take(&mut body)).await?;
            }
        }
    }
    post(&http, &vm.url, body).await?;
    SinkClient::new(vm.url.clone(), None).force_flush().await?;
    Ok(samples)
}

/// Whether the report found what the synthetic run holds: 120 W of package power per node (not 135 W with the
/// DRAM zone), 0.4 busy cores of each node's 8 (idle and iowait are not busy), 5000 messages/s.
fn check(report: &greenflow_report::Report, nodes: usize) -> bool {
    let value = |query: &str, figure: &str| {
        report.rows.iter().find(|r| r.query_key == query && r.figure == figure).and_then(|r| r.values[0])
    };
    let near = |found: Option<f64>, expected: f64| found.is_some_and(|f| (f - expected).abs() <= expected * 1e-6);
    near(value("power", "mean"), 120.0 * nodes as f64)
        && near(value("cpu", "mean"), 8.0 * 0.35 * nodes as f64)
        && near(value("work", "throughput"), 5000.0 * nodes as f64)
}

/// A plain download of the run's samples: seconds and bytes.
async fn download(vm: &BareVm, id: &str, from_ms: i64, to_ms: i64) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let mut response = reqwest::Client::new()
        .get(format!("{}/api/v1/export", vm.url))
        .query(&[
            ("match[]", format!("{{greenflow_run=\"{id}\"}}")),
            ("start", (from_ms / 1000).to_string()),
            ("end", (to_ms / 1000).to_string()),
        ])
        .send()
        .await?
        .error_for_status()?;
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
    }
    Ok((started.elapsed().as_secs_f64(), bytes))
}

/// `greenflow bench report`.
pub async fn report(settings: &Settings, args: &BenchReportArgs) -> anyhow::Result<u8> {
    if args.nodes == 0 || args.rounds == 0 || args.duration < Duration::from_secs(60) {
        anyhow::bail!("--nodes and --rounds must be at least 1 and --duration at least 1m");
    }
    let vm_binary =
        Program::VictoriaMetrics.locate(settings.config.sink.victoria_metrics.binary.as_deref(), &settings.env)?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let vm = BareVm::start(&vm_binary, &dir.path().join("vm")).await?;
    let id = "20261201T000000Z-be7c";
    let points = args.duration.as_secs() as i64 / SCRAPE_SECONDS;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let to_ms = (now - 3600) / 60 * 60 * 1000;
    let from_ms = to_ms - points * SCRAPE_SECONDS * 1000;
    eprintln!("loading a {} run of {} nodes ...", humantime::format_duration(args.duration), args.nodes);
    let samples = load(&vm, id, args.nodes, from_ms, points).await?;
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .map(|t| t.format(&time::format_description::well_known::Rfc3339))
    };
    let record = serde_json::from_value(json!({
        "format_version": 1, "id": id, "name": "bench", "status": "complete", "backend": "kube",
        "start": at(from_ms)??, "end": at(to_ms - 1000)??, "labels": {"greenflow_run": id},
    }))?;
    let input = RunInput {
        record,
        client: SinkClient::new(vm.url.clone(), None),
        scrape_interval: Duration::from_secs(SCRAPE_SECONDS as u64),
        origin: "bench".into(),
    };
    let config = ReportConfig {
        work: Some(WorkConfig {
            query: "experiment_messages_total{greenflow_run=\"$run\"}".into(),
            unit: "message".into(),
        }),
        ..ReportConfig::default()
    };
    let request = ReportRequest { runs: vec![input], baseline: None, config, idle: Some(Idle::Watts(40.0)) };

    eprintln!("{samples} samples; report vs a plain download of the run, {} rounds ...", args.rounds);
    let (mut ours, mut queries, mut plain, mut bytes) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut checked = None;
    for round in 0..args.rounds {
        let (seconds, size) = download(&vm, id, from_ms, to_ms).await?;
        plain.push(seconds);
        bytes = size;
        let started = Instant::now();
        let built = greenflow_report::build(&request, &mut |_| {}).await?;
        queries.push(started.elapsed().as_secs_f64());
        greenflow_report::write::write(&built, &dir.path().join(format!("report-{round}")))?;
        ours.push(started.elapsed().as_secs_f64());
        checked.get_or_insert_with(|| check(&built, args.nodes));
    }
    let (cold, cold_queries) = (ours[0], queries[0]);
    // Later rounds read VictoriaMetrics' rollup result cache (a run an hour old is past -search.cacheTimestampOffset).
    let (warm, plain) = (median_f64(&mut ours[1..].to_vec()), median_f64(&mut plain));
    let ratio = plain.map(|p| p / cold);
    let figures = json!({
        "duration_seconds": args.duration.as_secs(), "nodes": args.nodes, "samples": samples,
        "report_seconds": cold, "report_queries_seconds": cold_queries, "report_cached_seconds": warm,
        "download_seconds": plain, "download_bytes": bytes, "download_over_report": ratio,
        "figures_as_generated": checked.unwrap_or_default(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        let s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} s"));
        println!("run: {} of {} nodes, {samples} samples", humantime::format_duration(args.duration), args.nodes);
        println!(
            "greenflow report: {} (queries {}, the rest plots and files); {} again from VictoriaMetrics' cache",
            s(Some(cold)),
            s(Some(cold_queries)),
            s(warm)
        );
        println!("plain download of the run: {} ({} MB)", s(plain), bytes / 1_000_000);
        if let Some(r) = ratio {
            println!("the download takes {r:.1}x the report's time");
        }
        println!("figures as generated: {}", if checked == Some(true) { "yes" } else { "NO (see --json)" });
    }
    Ok(exit::OK)
}
