//! `greenflow bench data`: runs as data, against the baselines a user would otherwise reach for, on the same
//! VictoriaMetrics in the same run:
//! - export throughput: `greenflow export` (checkpointed hour parts, canonical, one file) against a plain download of
//!   the same `/api/v1/export` in one request; and its peak memory at two run sizes (flat is the goal);
//! - a whole copy of one run between two VictoriaMetrics: `greenflow archive` + `greenflow import` against `vmctl
//!   vm-native` with the same selector and window (when vmctl is installed: it ships with VictoriaMetrics);
//! - NAR hashing of the archive: greenflow's against `nix hash path` (when Nix is installed).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_data::archive;
use greenflow_data::series::{Labels, ValueSpelling, render_line};
use greenflow_data::{Format, NarHash, Staging, VmEndpoint, Window};
use greenflow_runs::RunRecord;
use greenflow_sink::Program;
use serde_json::json;

use greenflow_sink::SinkClient;

use super::{free_port, median_f64, time_until_healthy};
use crate::cli::{BenchDataArgs, BenchExportChildArgs};
use crate::exit;

/// A bare VictoriaMetrics for the benchmark, killed on drop.
pub(super) struct BareVm {
    _child: tokio::process::Child,
    pub(super) url: String,
}

impl BareVm {
    pub(super) async fn start(binary: &Path, data: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = tokio::process::Command::new(binary)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-retentionPeriod=100y")
            .arg("-dedup.minScrapeInterval=1ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start `{}`", binary.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        time_until_healthy(&SinkClient::new(url.clone(), None), Instant::now(), Duration::from_secs(60)).await?;
        Ok(Self { _child: child, url })
    }

    fn endpoint(&self) -> VmEndpoint {
        VmEndpoint::new(&self.url, None)
    }
}

/// A synthetic run: `series` series of one sample a second over `points` seconds, ending an hour ago.
struct SyntheticRun {
    record: RunRecord,
    window: Window,
    samples: u64,
}

fn synthetic_record(id: &str, window: Window) -> anyhow::Result<RunRecord> {
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .map(|t| t.format(&time::format_description::well_known::Rfc3339))
    };
    Ok(serde_json::from_value(json!({
        "format_version": 1, "id": id, "name": "bench", "status": "complete", "backend": "local",
        "start": at(window.from_ms)??, "end": at(window.to_ms)??,
        "labels": {"greenflow_run": id, "greenflow_experiment": "bench"},
    }))?)
}

async fn load(vm: &BareVm, id: &str, series: u64, points: u64) -> anyhow::Result<SyntheticRun> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let to_ms = (now - 3600) / 60 * 60 * 1000;
    let from_ms = to_ms - points as i64 * 1000;
    let http = reqwest::Client::new();
    let mut body = String::new();
    for s in 0..series {
        let labels: Labels = [
            ("__name__".to_owned(), format!("bench_metric_{}", s % 20)),
            ("greenflow_run".to_owned(), id.to_owned()),
            ("instance".to_owned(), format!("node-{}:9100", s / 20)),
        ]
        .into();
        let samples: Vec<(i64, f64)> =
            (0..points).map(|p| (from_ms + p as i64 * 1000, s as f64 * 1000.0 + p as f64 * 0.37)).collect();
        body.push_str(&render_line(&labels, &samples, ValueSpelling::Import));
        body.push('\n');
        if body.len() > 8 << 20 {
            post(&http, &vm.url, std::mem::take(&mut body)).await?;
        }
    }
    post(&http, &vm.url, body).await?;
    vm.endpoint().force_flush().await;
    let window = Window { from_ms, to_ms };
    Ok(SyntheticRun { record: synthetic_record(id, window)?, window, samples: series * points })
}

pub(super) async fn post(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let response = http.post(format!("{url}/api/v1/import")).body(body).send().await?;
    if !response.status().is_success() {
        bail!("VictoriaMetrics refused the benchmark's data: {}", response.status());
    }
    Ok(())
}

/// One `greenflow export` in a child process (so that its peak memory is its own): seconds and peak RSS.
async fn child_export(vm: &BareVm, run: &SyntheticRun, out: &Path) -> anyhow::Result<(f64, u64)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let output = tokio::process::Command::new(exe)
        .args(["bench-export-child", &vm.url, &archive::run_selector(&run.record)])
        .arg(run.window.from_ms.to_string())
        .arg(run.window.to_ms.to_string())
        .arg(out)
        .output()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("the export child failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    if report["samples"].as_u64() != Some(run.samples) {
        bail!("the export child wrote {} samples of {}", report["samples"], run.samples);
    }
    Ok((seconds, report["peak_rss_bytes"].as_u64().unwrap_or(0)))
}

/// `greenflow bench-export-child URL SELECTOR FROM TO OUT` (internal): one export to JSON lines; prints the samples
/// written and this process' peak resident memory (VmHWM).
pub async fn export_child(args: &BenchExportChildArgs) -> anyhow::Result<u8> {
    let source = VmEndpoint::new(&args.url, None);
    let window = Window { from_ms: args.from_ms, to_ms: args.to_ms };
    let partial = args.out.join(".bench.export");
    let mut staging = Staging::open(&partial, &args.selector, window)?;
    staging.fetch_all(&source, &mut |_| {}).await?;
    let samples =
        greenflow_data::formats::write(&partial, staging.parts(), Format::Jsonl, &args.out.join("bench.jsonl"))?;
    staging.finish()?;
    std::fs::remove_dir_all(&partial)?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!("{}", json!({"samples": samples, "peak_rss_bytes": hwm_kb * 1024}));
    Ok(exit::OK)
}

/// The JSON-lines floor of a copy: the run's `/api/v1/export` in one request, handed as it streams to the
/// target's `/api/v1/import`, then a force flush; nothing checked, nothing kept. Seconds.
async fn plain_json_copy(source: &BareVm, target: &BareVm, run: &SyntheticRun) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let export = plain_export(&http, source, run).await?;
    http.post(format!("{}/api/v1/import", target.url))
        .body(reqwest::Body::wrap_stream(export.bytes_stream()))
        .send()
        .await?
        .error_for_status()?;
    target.endpoint().force_flush().await;
    Ok(started.elapsed().as_secs_f64())
}

/// The run's whole `/api/v1/export` in one request, as a user would ask for it.
async fn plain_export(http: &reqwest::Client, vm: &BareVm, run: &SyntheticRun) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .get(format!("{}/api/v1/export", vm.url))
        .query(&[
            ("match[]", archive::run_selector(&run.record)),
            ("start", (run.window.from_ms / 1000).to_string()),
            ("end", (run.window.to_ms / 1000).to_string()),
        ])
        .send()
        .await?
        .error_for_status()?)
}

/// A plain download of the run's `/api/v1/export` in one request, to a file: seconds and bytes.
async fn plain_download(vm: &BareVm, run: &SyntheticRun, out: &Path) -> anyhow::Result<(f64, u64)> {
    use std::io::Write;
    let started = Instant::now();
    let mut response = plain_export(&reqwest::Client::new(), vm, run).await?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok((started.elapsed().as_secs_f64(), bytes))
}

/// Whether `program vm-native --help` mentions `flag`.
async fn help_mentions(program: &Path, flag: &str) -> bool {
    let output = tokio::process::Command::new(program).args(["vm-native", "--help"]).output().await;
    output.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).contains(flag) || String::from_utf8_lossy(&o.stderr).contains(flag)
    })
}

/// `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// `name` beside VictoriaMetrics (vmctl ships with it), else on PATH.
fn locate_beside(vm: &Path, name: &str) -> Option<PathBuf> {
    vm.parent().map(|d| d.join(name)).filter(|p| p.is_file()).or_else(|| on_path(name))
}

fn ratio(baseline: &mut [f64], ours: &mut [f64]) -> Option<f64> {
    Some(median_f64(baseline)? / median_f64(ours)?)
}

/// `greenflow bench data`.
pub async fn data(settings: &Settings, args: &BenchDataArgs) -> anyhow::Result<u8> {
    if args.samples < 10_000 || args.rounds == 0 {
        bail!("--samples must be at least 10000 and --rounds at least 1");
    }
    let vm_binary =
        Program::VictoriaMetrics.locate(settings.config.sink.victoria_metrics.binary.as_deref(), &settings.env)?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let source = BareVm::start(&vm_binary, &dir.path().join("source")).await?;
    let points = 3600u64.min(args.samples / 100).max(100);
    let series = args.samples.div_ceil(points);
    let quarter = (series / 4).max(1);
    eprintln!("loading two synthetic runs: {series} x {points} and {quarter} x {points} samples ...");
    let big = load(&source, "20261201T000000Z-b16b", series, points).await?;
    let small = load(&source, "20261201T000000Z-5a11", quarter, points).await?;

    eprintln!("export: greenflow export vs a plain download of /api/v1/export, {} rounds ...", args.rounds);
    let (mut ours, mut plain, mut rss_big) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let out = dir.path().join(format!("export-{round}"));
        std::fs::create_dir_all(&out)?;
        let (seconds, _) = plain_download(&source, &big, &out.join("plain.jsonl")).await?;
        plain.push(seconds);
        let (seconds, rss) = child_export(&source, &big, &out).await?;
        ours.push(seconds);
        rss_big.push(rss as f64);
        std::fs::remove_dir_all(&out)?;
    }
    let out = dir.path().join("export-small");
    std::fs::create_dir_all(&out)?;
    let (_, rss_small) = child_export(&source, &small, &out).await?;

    eprintln!("archive + import vs vmctl vm-native, {} rounds ...", args.rounds);
    let vmctl = match locate_beside(&vm_binary, "vmctl") {
        // vmctl before --disable-progress-bar (Debian 12's 1.79) needs a terminal for its progress bars.
        Some(vmctl) if help_mentions(&vmctl, "disable-progress-bar").await => Some(vmctl),
        Some(vmctl) => {
            eprintln!("{} has no --disable-progress-bar and needs a terminal: not measured", vmctl.display());
            None
        }
        None => None,
    };
    let (mut copy_ours, mut copy_vmctl) = (Vec::new(), Vec::new());
    // Where our copy's time goes: making the archive (export, canonical parts, checksums) and importing it
    // (checksums, the write, the read-back that compares the sink's copy with the manifest).
    let (mut archive_part, mut import_part) = (Vec::new(), Vec::new());
    let mut copy_plain = Vec::new();
    let mut archive_dir = None;
    for round in 0..args.rounds {
        let target = BareVm::start(&vm_binary, &dir.path().join(format!("target-{round}"))).await?;
        let out = dir.path().join(format!("archive-{round}"));
        let started = Instant::now();
        let (made, _) = archive::create(&source.endpoint(), &big.record, big.window, &out, &mut |_| {}).await?;
        let archived = started.elapsed().as_secs_f64();
        greenflow_data::import(&made.dir, &target.endpoint(), false).await?;
        copy_ours.push(started.elapsed().as_secs_f64());
        archive_part.push(archived);
        import_part.push(started.elapsed().as_secs_f64() - archived);
        drop(target);
        archive_dir = Some(made.dir);
        if let Some(vmctl) = &vmctl {
            let target = BareVm::start(&vm_binary, &dir.path().join(format!("vmctl-target-{round}"))).await?;
            let rfc = |ms: i64| {
                time::OffsetDateTime::from_unix_timestamp(ms / 1000)
                    .map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
                    .unwrap_or_default()
            };
            let started = Instant::now();
            // -s (no confirmation prompt) is newer than --disable-progress-bar: the answer is given on stdin.
            let mut child = tokio::process::Command::new(vmctl)
                .arg("vm-native")
                .arg(format!("--vm-native-src-addr={}", source.url))
                .arg(format!("--vm-native-dst-addr={}", target.url))
                .arg(format!("--vm-native-filter-match={}", archive::run_selector(&big.record)))
                .arg(format!("--vm-native-filter-time-start={}", rfc(big.window.from_ms)))
                .arg(format!("--vm-native-filter-time-end={}", rfc(big.window.to_ms)))
                .arg("--disable-progress-bar")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start `{}`", vmctl.display()))?;
            if let Some(mut stdin) = child.stdin.take() {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(b"y\n").await;
            }
            let output = child.wait_with_output().await?;
            if !output.status.success() {
                bail!("vmctl vm-native failed: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            copy_vmctl.push(started.elapsed().as_secs_f64());
        }
        let target = BareVm::start(&vm_binary, &dir.path().join(format!("plain-target-{round}"))).await?;
        copy_plain.push(plain_json_copy(&source, &target, &big).await?);
    }

    eprintln!("NAR hash: greenflow vs nix hash path, {} rounds ...", args.rounds);
    let archive_dir = archive_dir.context("no archive was made")?;
    let nix = on_path("nix");
    let (mut nar_ours, mut nar_nix) = (Vec::new(), Vec::new());
    let mut nar = None;
    for _ in 0..args.rounds {
        let started = Instant::now();
        let hash = NarHash::of_path(&archive_dir)?;
        nar_ours.push(started.elapsed().as_secs_f64());
        if let Some(nix) = &nix {
            let started = Instant::now();
            let output = tokio::process::Command::new(nix)
                .args(["--extra-experimental-features", "nix-command", "hash", "path", "--type", "sha256"])
                .arg(&archive_dir)
                .output()
                .await?;
            nar_nix.push(started.elapsed().as_secs_f64());
            let theirs = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if theirs != hash.sri() {
                bail!("nix hash path says {theirs}, greenflow {}: the NAR hashes disagree", hash.sri());
            }
        }
        nar = Some(hash);
    }

    let report = json!({
        "samples": big.samples,
        "series": series,
        "victoria_metrics": source.endpoint().version().await,
        "export": {
            "greenflow_seconds_median": median_f64(&mut ours.clone()),
            "plain_download_seconds_median": median_f64(&mut plain.clone()),
            "throughput_ratio_vs_plain_download": ratio(&mut plain, &mut ours),
            "peak_rss_bytes": {"samples": big.samples, "median": median_f64(&mut rss_big)},
            "peak_rss_bytes_quarter_run": {"samples": small.samples, "bytes": rss_small},
        },
        "copy": {
            "archive_import_seconds_median": median_f64(&mut copy_ours.clone()),
            "archive_seconds_median": median_f64(&mut archive_part),
            "import_seconds_median": median_f64(&mut import_part),
            "vmctl_vm_native_seconds_median": median_f64(&mut copy_vmctl.clone()),
            "speed_ratio_vs_vmctl": if copy_vmctl.is_empty() { None } else { ratio(&mut copy_vmctl, &mut copy_ours) },
            "plain_json_copy_seconds_median": median_f64(&mut copy_plain.clone()),
            "speed_ratio_vs_plain_json_copy": ratio(&mut copy_plain.clone(), &mut copy_ours),
            "plain_json_copy_speed_ratio_vs_vmctl": if copy_vmctl.is_empty() { None } else { ratio(&mut copy_vmctl, &mut copy_plain) },
            "vmctl": vmctl,
        },
        "nar_hash": {
            "archive_bytes": greenflow_sink::dir_size(&archive_dir),
            "greenflow_seconds_median": median_f64(&mut nar_ours.clone()),
            "nix_hash_path_seconds_median": median_f64(&mut nar_nix.clone()),
            "speed_ratio_vs_nix": if nar_nix.is_empty() { None } else { ratio(&mut nar_nix, &mut nar_ours) },
            "sri": nar.map(|n| n.sri()),
        },
        "rounds": args.rounds,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
        let mb = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{:.1} MB", x / 1e6));
        println!("{} samples in {} series; medians of {} rounds", big.samples, series, args.rounds);
        println!(
            "export      {}x the throughput of a plain /api/v1/export download; peak memory {} ({} samples), {} ({} samples)",
            f(&report["export"]["throughput_ratio_vs_plain_download"]),
            mb(&report["export"]["peak_rss_bytes"]["median"]),
            big.samples,
            mb(&report["export"]["peak_rss_bytes_quarter_run"]["bytes"]),
            small.samples
        );
        println!(
            "copy        archive + import {}x as fast as vmctl vm-native{} (archive {}s, import {}s, vmctl {}s); \
             {}x a plain JSON-lines export piped into an import ({}s, itself {}x vmctl)",
            f(&report["copy"]["speed_ratio_vs_vmctl"]),
            if vmctl.is_none() { " (vmctl not found: not measured)" } else { "" },
            f(&report["copy"]["archive_seconds_median"]),
            f(&report["copy"]["import_seconds_median"]),
            f(&report["copy"]["vmctl_vm_native_seconds_median"]),
            f(&report["copy"]["speed_ratio_vs_plain_json_copy"]),
            f(&report["copy"]["plain_json_copy_seconds_median"]),
            f(&report["copy"]["plain_json_copy_speed_ratio_vs_vmctl"])
        );
        println!(
            "nar hash    {}x as fast as nix hash path{}",
            f(&report["nar_hash"]["speed_ratio_vs_nix"]),
            if nix.is_none() { " (nix not found: not measured)" } else { "" }
        );
    }
    Ok(exit::OK)
}
