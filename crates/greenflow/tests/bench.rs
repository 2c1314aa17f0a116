//! The benchmarks end to end at tiny sizings, on the real sink, Prometheus agent and (for drain) node-exporter:
//! the shape of their JSON, and that the figures are there and agree with each other.

mod common;

use common::Project;
use serde_json::Value;

fn number(value: &Value, what: &str) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// Issue 11: `bench ingest` writes through the sink and straight into VictoriaMetrics in alternating rounds, and
/// VictoriaMetrics' count of what arrived matches Prometheus' count of what it sent.
#[test]
fn bench_ingest_json_at_a_tiny_sizing() {
    let project = Project::new();
    let out = project.ok(&[
        "bench",
        "ingest",
        "--targets",
        "2",
        "--series-per-target",
        "50",
        "--rounds",
        "2",
        "--round-duration",
        "10s",
        "--warmup",
        "1s",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert_eq!(report["mode"], "rounds");
    assert_eq!(report["targets"], 2);
    assert_eq!(report["series_per_target"], 50);
    assert_eq!(report["rounds"], 2);
    // 2 targets x (50 series + 5 report series) every second.
    assert_eq!(number(&report["offered_samples_per_second"], "offered"), 110.0);
    assert_eq!(report["queue_config"]["batch_send_deadline_seconds"], 1.0, "the default deadline reaches the agent");
    assert_eq!(report["queue_config"]["max_samples_per_send"], 10000);
    for program in ["prometheus", "victoria-metrics", "caddy"] {
        assert!(report["versions"][program].is_string(), "no {program} version: {}", report["versions"]);
    }

    for key in ["direct", "through_sink"] {
        let path = &report["paths"][key];
        assert_eq!(path["rounds"], 2, "{key}: {path}");
        let delivered = number(&path["samples_per_second"], "samples/s");
        let sent = number(&path["prometheus_sent_samples_per_second"], "sent/s");
        assert!(delivered > 0.0 && sent > 0.0, "{key}: nothing delivered: {path}");
        // The two counters may differ by the batches in flight at the window's two ends: at most one batch, a
        // second's worth (110 samples), at each, out of a 10 s window: 20 %. More, and a count lost or doubled
        // samples.
        assert!((delivered - sent).abs() / delivered <= 0.25, "{key}: VictoriaMetrics and Prometheus disagree: {path}");
        assert!(number(&path["cross_check_difference_max"], "cross-check") <= 0.25, "{key}: {path}");
        assert!((delivered / 110.0 - 1.0).abs() <= 0.25, "{key}: not what was offered: {path}");
        assert_eq!(path["rounds_kept_up"], 2, "{key}: the queue fell behind at 110 samples/s: {path}");
        for program in ["victoria_metrics", "caddy", "prometheus_agent", "bench_targets"] {
            assert!(number(&path["cpu_seconds_per_million_samples"][program], program) >= 0.0, "{key}: {path}");
            assert!(path["cores"][program].is_number(), "{key}: {path}");
        }
    }
    let ratio = number(&report["ratios"]["samples_per_second_through_sink_vs_direct"], "ratio");
    assert!((0.8..1.25).contains(&ratio), "sink vs direct {ratio}");
    assert!(report["goal"]["met"].is_boolean());

    let rounds = report["per_round"].as_array().unwrap();
    let order: Vec<(u64, &str)> =
        rounds.iter().map(|r| (r["round"].as_u64().unwrap(), r["path"].as_str().unwrap())).collect();
    assert_eq!(order, [(1, "direct"), (1, "through_sink"), (2, "through_sink"), (2, "direct")], "alternating");
    for round in rounds {
        assert_eq!(round["samples_failed"], 0.0, "{round}");
        assert!(number(&round["measured_seconds"], "window") >= 5.0, "{round}");
        assert!(number(&round["target_scrapes_per_second"], "scrapes") > 1.0, "both targets scraped: {round}");
        assert!(round["queue"]["lag_max_seconds"].is_number() && round["queue"]["shards_max"].is_number());
    }
}

/// Issue 11: `bench drain` reports freshness p50/p90, the first sample after scale-up and its parts, for both paths.
#[test]
fn bench_drain_reports_freshness_quantiles_and_the_first_sample() {
    let project = Project::new();
    let out = project.ok(&["bench", "drain", "--runs", "1", "--duration", "3s", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert_eq!(report["scrape_interval_seconds"], 1.0, "the stand-in's new default");
    assert_eq!(report["batch_send_deadline_seconds"], 1.0, "the new default");
    let m = &report["median_seconds"];
    for path in ["direct", "through_sink"] {
        let p50 = number(&m[format!("freshness_p50_{path}")], "p50");
        let p90 = number(&m[format!("freshness_p90_{path}")], "p90");
        assert!(p50 > 0.0 && p50 <= p90, "{path}: {m}");
        let first = number(&m[format!("first_sample_after_scale_up_{path}")], "first sample");
        assert!(first > 0.0, "{path}: {m}");
        assert!(number(&m[format!("drain_{path}")], "drain") > 0.0, "{path}: {m}");
        let parts = &report["first_sample_parts_median_seconds_after_scale_up_began"][path];
        let part = |k: &str| number(&parts[k], k);
        // Polled every 50 ms, beside the lifecycle's own wait for readiness.
        assert!(part("agent_ready") <= part("scale_up_done") + 0.2, "{path}: {parts}");
        assert!(part("first_scrape") <= part("first_send"), "{path}: {parts}");
        assert!(part("first_send") <= part("first_visible"), "{path}: {parts}");
    }
    assert!(report["ratios"]["freshness_p50_through_sink_vs_direct"].is_number());
    assert_eq!(report["per_run"].as_array().map(Vec::len), Some(2));
}

/// Issue 13: `bench data` measures export, copy and NAR hashing against their baselines on a synthetic run, and
/// the export it measures wrote every sample (the child checks its count).
#[test]
fn bench_data_json_at_a_tiny_sizing() {
    let project = Project::new();
    let out = project.ok(&["bench", "data", "--samples", "20000", "--rounds", "1", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert!(report["samples"].as_u64().unwrap() >= 20_000, "{report}");
    assert!(number(&report["export"]["throughput_ratio_vs_plain_download"], "export ratio") > 0.0);
    let rss = number(&report["export"]["peak_rss_bytes"]["median"], "peak RSS");
    assert!(rss > 1e6 && rss < 1e9, "a plausible peak RSS: {rss}");
    assert!(number(&report["export"]["peak_rss_bytes_quarter_run"]["bytes"], "quarter RSS") > 1e6);
    assert!(number(&report["copy"]["archive_import_seconds_median"], "copy") > 0.0);
    // vmctl ships with current VictoriaMetrics builds, not with Debian 12's: measured when it is there.
    assert_eq!(report["copy"]["vmctl"].is_string(), report["copy"]["speed_ratio_vs_vmctl"].is_number(), "{report}");
    assert!(report["nar_hash"]["sri"].as_str().unwrap().starts_with("sha256-"));
    assert_eq!(
        report["nar_hash"]["nix_hash_path_seconds_median"].is_number(),
        report["nar_hash"]["speed_ratio_vs_nix"].is_number()
    );
}

#[test]
fn bench_report_json_at_a_tiny_sizing_finds_the_generated_figures() {
    let project = Project::new();
    let out = project.ok(&["bench", "report", "--duration", "2m", "--nodes", "2", "--rounds", "2", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert_eq!(report["figures_as_generated"], true, "{report}");
    assert!(report["samples"].as_u64().unwrap() > 2 * 1000 * 24, "{report}");
    assert!(number(&report["report_seconds"], "report") >= number(&report["report_queries_seconds"], "queries"));
    assert!(number(&report["download_over_report"], "ratio") > 0.0);
    assert!(number(&report["download_bytes"], "bytes") > 1e6);
}
