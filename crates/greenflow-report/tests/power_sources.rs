//! Power sources against a real VictoriaMetrics (the report's own scratch, from `GREENFLOW_TEST_PROGRAMS`, else
//! PATH): Scaphandre's microwatt and microjoule series become watts and joules; Kepler without its package zone is
//! not used in its place (zones overlap) and the report says why; a run with neither has its power missing, and
//! being lossy, says so at the top of the page.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use greenflow_config::ReportConfig;
use greenflow_report::{ReportRequest, RunInput, ScratchVm};
use greenflow_runs::RunRecord;
use greenflow_sink::{ImportSeries, Program};

fn victoria_metrics() -> PathBuf {
    let dirs = std::env::var_os("GREENFLOW_TEST_PROGRAMS")
        .map(|d| vec![PathBuf::from(d)])
        .unwrap_or_else(|| std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect());
    dirs.iter()
        .flat_map(|dir| Program::VictoriaMetrics.executable_names().iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
        .expect("a VictoriaMetrics in GREENFLOW_TEST_PROGRAMS or on PATH (scripts/install-deps)")
}

/// A run of 100 s ending an hour ago, and its window in milliseconds.
fn run(id: &str) -> (RunRecord, i64, i64) {
    let end = (time::OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000;
    let start = end - 100_000;
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let record = serde_json::from_value(serde_json::json!({
        "format_version": 1, "id": id, "name": id, "status": "complete", "backend": "kube",
        "start": at(start), "end": at(end), "labels": {"greenflow_run": id},
    }))
    .unwrap();
    (record, start, end)
}

/// A series of `id` sampled every 5 s over its window, valued `value(seconds since the start)`.
fn series(id: &str, start: i64, end: i64, labels: &[(&str, &str)], value: impl Fn(f64) -> f64) -> ImportSeries {
    let mut metric: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    metric.insert("greenflow_run".into(), id.into());
    let timestamps: Vec<i64> = (start..=end).step_by(5000).collect();
    let values = timestamps.iter().map(|t| value((t - start) as f64 / 1000.0)).collect();
    ImportSeries { metric, values, timestamps }
}

#[tokio::test]
async fn scaphandre_kepler_without_a_package_zone_no_source_at_all_and_a_lossy_run() {
    let vm = ScratchVm::start(&victoria_metrics()).await.unwrap();
    let client = vm.client();
    let (scaph, s0, s1) = run("20261201T000000Z-5ca9");
    let (zones, z0, z1) = run("20261201T000000Z-d7a0");
    let (mut bare, b0, b1) = run("20261201T000000Z-0000");
    bare.status = greenflow_runs::RunStatus::Lossy;
    bare.drain = Some(
        serde_json::from_value(serde_json::json!({
            "outcome": "lossy", "seconds": 1.5, "samples_failed": 12, "samples_dropped": 3,
        }))
        .unwrap(),
    );
    client
        .import(&[
            // 80 W, in Scaphandre's units; its energy counter starts far from zero.
            series(scaph.id.as_str(), s0, s1, &[("__name__", "scaph_host_power_microwatts")], |_| 80e6),
            series(scaph.id.as_str(), s0, s1, &[("__name__", "scaph_host_energy_microjoules")], |t| 1e12 + 80e6 * t),
            // Kepler with only the core and DRAM zones.
            series(zones.id.as_str(), z0, z1, &[("__name__", "kepler_node_cpu_joules_total"), ("zone", "core")], |t| {
                1e6 + 30.0 * t
            }),
            series(zones.id.as_str(), z0, z1, &[("__name__", "kepler_node_cpu_joules_total"), ("zone", "dram")], |t| {
                1e6 + 9.0 * t
            }),
            series(bare.id.as_str(), b0, b1, &[("__name__", "node_memory_MemTotal_bytes")], |_| 64e9),
        ])
        .await
        .unwrap();
    client.force_flush().await.unwrap();
    let input = |record: RunRecord| RunInput {
        record,
        client: vm.client(),
        scrape_interval: Duration::from_secs(5),
        origin: "test".into(),
    };
    let request = ReportRequest {
        runs: vec![input(scaph), input(zones), input(bare)],
        baseline: None,
        config: ReportConfig::default(),
        idle: None,
    };
    let report = greenflow_report::build(&request, &mut |_| {}).await.unwrap();
    vm.stop().await;

    let kinds: Vec<_> = report.runs.iter().map(|r| r.power.kind).collect();
    use greenflow_report::queries::PowerSourceKind::Scaphandre;
    assert_eq!(kinds, [Some(Scaphandre), None, None], "{:#?}", report.runs);
    assert!(report.runs[0].power.reason.starts_with("Scaphandre"), "{}", report.runs[0].power.reason);
    let reason = &report.runs[1].power.reason;
    assert!(reason.contains("core, dram") && reason.contains("no zone=\"package\""), "{reason}");
    assert!(report.runs[2].power.reason.contains("neither Kepler"), "{}", report.runs[2].power.reason);

    let figure = |query: &str, name: &str| {
        report.rows.iter().find(|r| r.query_key == query && r.figure == name).unwrap().values.clone()
    };
    let mean = figure("power", "mean");
    assert!((mean[0].unwrap() - 80.0).abs() < 1e-9, "{mean:?}");
    assert_eq!(&mean[1..], [None, None], "no power is missing power, not zero");
    // 100 s of samples every 5 s: the increase from the first to the last sample, 100 s at 80 W.
    let energy = figure("power", "energy");
    assert!((energy[0].unwrap() - 8000.0).abs() < 1e-6, "{energy:?}");
    assert_eq!(figure("memory", "mean")[2], None, "MemAvailable is missing, so memory used is too");

    // The lossy run says so at the top of the page and of the Markdown.
    let out = tempfile::tempdir().unwrap();
    let written = greenflow_report::write::write(&report, out.path()).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    let banner = html.find("role=\"alert\"").expect("a banner");
    assert!(banner < html.find("<h2>Runs</h2>").unwrap(), "the banner comes first");
    assert!(html.contains("run 20261201T000000Z-0000 is lossy: 15 samples were lost"), "{html}");
    let md = std::fs::read_to_string(&written.markdown).unwrap();
    assert!(md.lines().nth(2).unwrap().starts_with("> **Warning:** run 20261201T000000Z-0000 is lossy"), "{md}");
    assert!(md.contains("| Power | mean | 80 W | missing | missing |"), "{md}");
}
