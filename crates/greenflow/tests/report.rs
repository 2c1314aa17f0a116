//! End-to-end tests of `greenflow report`: two real runs on the `local` back-end (Prometheus agent, node-exporter,
//! Caddy, VictoriaMetrics) that also scrape a synthetic exporter with known power and work, reported from the sink
//! and from their archives with the sink stopped (the same numbers), and the page opened in headless Chromium.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Project, describe};
use serde_json::Value;

/// Power and work the synthetic exporter reports: watts on Kepler's package zone (and a DRAM zone that must never
/// be added to it) and messages per second, each counter linear in the sample's own timestamp, so that rates are
/// exact and energy per message is known in advance.
///
/// Counters count from [`COUNTER_BASE`] at the exporter's start: VictoriaMetrics keeps 12 significant decimal
/// digits of a value (lib/decimal), which a counter of joules since 1970 would exceed, and it takes a series whose
/// first value is below ten times its first step for one that started at zero (`rollupDelta` in
/// app/vmselect/promql/rollup.go), which a counter from zero would be.
struct Synthetic {
    started_ms: i64,
    watts: AtomicU64,
    messages_per_second: AtomicU64,
}

/// Where the synthetic counters start.
const COUNTER_BASE: f64 = 1e6;

impl Synthetic {
    fn set(&self, watts: f64, messages_per_second: f64) {
        self.watts.store(watts.to_bits(), Ordering::SeqCst);
        self.messages_per_second.store(messages_per_second.to_bits(), Ordering::SeqCst);
    }

    /// The exposition at `ms`, every sample stamped with it (Prometheus keeps exposed timestamps: honor_timestamps
    /// is true by default in its scrape config).
    fn exposition(&self, ms: i64) -> String {
        let watts = f64::from_bits(self.watts.load(Ordering::SeqCst));
        let rate = f64::from_bits(self.messages_per_second.load(Ordering::SeqCst));
        let t = (ms - self.started_ms) as f64 / 1000.0;
        format!(
            "# TYPE kepler_node_cpu_watts gauge\n\
             kepler_node_cpu_watts{{zone=\"package\"}} {watts} {ms}\n\
             kepler_node_cpu_watts{{zone=\"dram\"}} 20 {ms}\n\
             # TYPE kepler_node_cpu_joules_total counter\n\
             kepler_node_cpu_joules_total{{zone=\"package\"}} {} {ms}\n\
             kepler_node_cpu_joules_total{{zone=\"dram\"}} {} {ms}\n\
             # TYPE kepler_pod_cpu_watts gauge\n\
             kepler_pod_cpu_watts{{pod_namespace=\"kafka\",pod_name=\"kafka-0\",zone=\"package\"}} {} {ms}\n\
             kepler_pod_cpu_watts{{pod_namespace=\"kafka\",pod_name=\"kafka-1\",zone=\"package\"}} {} {ms}\n\
             kepler_pod_cpu_watts{{pod_namespace=\"monitoring\",pod_name=\"prometheus-0\",zone=\"package\"}} 5 {ms}\n\
             kepler_pod_cpu_watts{{pod_namespace=\"kafka\",pod_name=\"kafka-0\",zone=\"dram\"}} 7 {ms}\n\
             # TYPE experiment_messages_total counter\n\
             experiment_messages_total {} {ms}\n",
            COUNTER_BASE + watts * t,
            COUNTER_BASE + 20.0 * t,
            watts * 0.3,
            watts * 0.2,
            COUNTER_BASE + rate * t
        )
    }
}

/// Serves the synthetic exposition on a free loopback port for the test's lifetime; returns `host:port`.
fn serve_synthetic(synthetic: Arc<Synthetic>) -> String {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            // Read the request head up to its blank line.
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            let body = synthetic.exposition(ms);
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The report's value of (query key, figure) for the run in column `run`.
fn figure(report: &Value, query: &str, name: &str, run: usize) -> Option<f64> {
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["query_key"] == query && r["figure"] == name)
        .unwrap_or_else(|| panic!("no row {query}/{name} in {report:#}"));
    row["values"][run].as_f64()
}

fn assert_close(found: Option<f64>, expected: f64, what: &str) {
    let found = found.unwrap_or_else(|| panic!("{what} is missing"));
    assert!((found - expected).abs() <= expected.abs() * 1e-9, "{what}: {found}, expected {expected}");
}

fn config(exporter: &str, idle_run: &str) -> String {
    format!(
        "local:\n  scrape_interval: 1s\n  scrape_targets: [\"{exporter}\"]\n\
         remote_write:\n  batch_send_deadline: 1s\n  max_backoff: 2s\n\
         run:\n  drain_timeout: 3m\n  first_sample_timeout: 60s\n\
         report:\n  work:\n    query: experiment_messages_total{{greenflow_run=\"$run\"}}\n    unit: message\n\
         \x20 idle:\n    run: \"{idle_run}\"\n\
         \x20 queries:\n    - name: Kafka lag\n      query: kafka_consumergroup_lag{{greenflow_run=\"$run\"}}\n      aggregation: p99\n"
    )
}

/// Rewrites the project's greenflow.yaml below its `sink:` section.
fn set_config(project: &Project, extra: &str) {
    let path = project.path().join("greenflow.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The sink section is first; it ends at the next top-level key.
    let sink_end = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| text[i..].starts_with(|c: char| c.is_ascii_alphabetic()) && !text[i..].starts_with("sink:"));
    let sink_end = sink_end.unwrap_or(text.len());
    std::fs::write(&path, format!("{}{extra}", &text[..sink_end])).unwrap();
}

/// Every figure the researcher sees, from one report, for comparing two.
fn figures(report: &Value) -> Vec<(String, String, String, Vec<Value>)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = |k: &str| r[k].as_str().unwrap().to_owned();
            (name("query_key"), name("figure"), name("series"), r["values"].as_array().unwrap().clone())
        })
        .collect()
}

#[test]
fn a_report_of_two_runs_gives_known_energy_figures_from_the_sink_and_from_archives() {
    let started_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let synthetic =
        Arc::new(Synthetic { started_ms, watts: AtomicU64::new(0), messages_per_second: AtomicU64::new(0) });
    let exporter = serve_synthetic(Arc::clone(&synthetic));
    let project = Project::with_config(&config(&exporter, "unset"));
    project.sink_up();

    // The idle run: 50 W, no work.
    synthetic.set(50.0, 0.0);
    let output = project.run(&["run", "idle", "--backend", "local", "--duration", "8s"]);
    assert!(output.status.success(), "{}", describe(&output));
    // The experiment: 150 W at 1000 messages/s.
    synthetic.set(150.0, 1000.0);
    let output = project.run(&["run", "kafka", "--backend", "local", "--duration", "10s"]);
    assert!(output.status.success(), "{}", describe(&output));
    let runs = project.runs();
    let id = |name: &str| runs.iter().find(|r| r["name"] == name).unwrap()["id"].as_str().unwrap().to_owned();
    let (idle, kafka) = (id("idle"), id("kafka"));
    set_config(&project, &config(&exporter, &idle));

    // From the sink; the baseline is added as the first column.
    let from_sink = json(&project.ok(&["report", &kafka, "--baseline", &idle, "--out", "from-sink", "--json"]));
    assert_eq!(from_sink["runs"][0]["id"], idle.as_str(), "{from_sink:#}");
    assert_eq!(from_sink["runs"][1]["id"], kafka.as_str());
    assert_eq!(from_sink["baseline"], 0);
    for run in 0..2 {
        assert_eq!(from_sink["runs"][run]["power"]["kind"], "kepler", "{from_sink:#}");
    }
    // The package zone alone: 150 W, not 170 W with the DRAM zone added.
    assert_close(figure(&from_sink, "power", "mean", 1), 150.0, "kafka's mean power");
    assert_close(figure(&from_sink, "power", "mean", 0), 50.0, "idle's mean power");
    assert_close(figure(&from_sink, "work", "throughput", 1), 1000.0, "kafka's throughput");
    // Power per namespace: Kepler's pods summed by namespace, package zone only.
    let namespace = |ns: &str| {
        let rows = from_sink["rows"].as_array().unwrap();
        let row = rows.iter().find(|r| {
            r["query_key"] == "power-by-namespace"
                && r["figure"] == "mean"
                && r["series"] == format!("{{pod_namespace=\"{ns}\"}}")
        });
        row.unwrap_or_else(|| panic!("no power row for namespace {ns}: {from_sink:#}"))["values"][1].as_f64()
    };
    assert_close(namespace("kafka"), 150.0 * 0.5, "kafka's pods");
    assert_close(namespace("monitoring"), 5.0, "monitoring's pods");
    let done = figure(&from_sink, "work", "done", 1).unwrap();
    let length = from_sink["runs"][1]["duration_seconds"].as_f64().unwrap();
    assert!(done > 1000.0 * 5.0 && done <= 1000.0 * length, "{done} messages in a {length} s run");
    assert_close(figure(&from_sink, "power", "energy", 1), 0.150 * done, "kafka's energy: 150 J per 1000 messages");
    assert_close(figure(&from_sink, "energy-per-unit", "energy / work done", 1), 0.15, "J per message");
    assert_close(
        figure(&from_sink, "energy-per-unit", "(power − idle) / throughput", 1),
        (150.0 - 50.0) / 1000.0,
        "J per message above idle",
    );
    // No work in the idle run: its per-message figures are missing, never zero or infinite.
    assert_eq!(figure(&from_sink, "work", "done", 0), Some(0.0));
    assert_eq!(figure(&from_sink, "energy-per-unit", "energy / work done", 0), None);
    // A query of a metric neither run has is missing in both.
    assert_eq!(figure(&from_sink, "query-1", "p99", 0), None);
    assert_eq!(figure(&from_sink, "query-1", "p99", 1), None);
    // node-exporter's figures are real.
    assert!(figure(&from_sink, "cpu", "mean", 1).unwrap() > 0.0, "{from_sink:#}");
    assert!(figure(&from_sink, "memory", "max", 1).unwrap() > 1e6);
    // Against the baseline.
    let power_row = from_sink["rows"].as_array().unwrap().iter().find(|r| r["query_key"] == "power").unwrap();
    assert_close(power_row["deltas"][1].as_f64(), 100.0, "power delta");
    assert_close(power_row["ratios"][1].as_f64(), 3.0, "power ratio");

    let dir = project.path().join("from-sink");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("data:image/svg+xml;base64,"), "the plots are inlined");
    assert!(!html.contains("src=\"plots/") && !html.contains("http://") && !html.contains("https://"), "offline");
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(csv.starts_with("query,figure,series,unit,run,experiment,value,delta,ratio\n"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("Kafka lag,p99,,,") && l.contains(",,,")), "missing is empty: {csv}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| Kafka lag | p99 | missing | missing |"), "{md}");
    for plot in ["power", "cpu", "work"] {
        let png = std::fs::read(dir.join(format!("plots/{plot}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{plot}.png is a PNG");
        let svg = std::fs::read_to_string(dir.join(format!("plots/{plot}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("seconds since the run"), "{plot}.svg");
    }

    // From the archives, with the sink stopped: the same numbers.
    let archives = project.path().join("archives");
    let mut dirs = Vec::new();
    for run in [&idle, &kafka] {
        let made = json(&project.ok(&["archive", run, "--out", archives.to_str().unwrap(), "--json"]));
        dirs.push(made["dir"].as_str().unwrap().to_owned());
    }
    project.ok(&["sink", "down"]);
    set_config(&project, &config(&exporter, &dirs[0]));
    let from_archive =
        json(&project.ok(&["report", &dirs[1], "--baseline", &dirs[0], "--out", "from-archive", "--json"]));
    // The same numbers, to the last digits an archive keeps: it holds values to 15 significant digits, and
    // VictoriaMetrics 1.79 keeps more of what remote write sends, so a rate may differ in its last bits.
    let (archived, sunk) = (figures(&from_archive), figures(&from_sink));
    assert_eq!(archived.len(), sunk.len());
    for (a, s) in archived.iter().zip(&sunk) {
        assert_eq!((&a.0, &a.1, &a.2), (&s.0, &s.1, &s.2));
        for (x, y) in a.3.iter().zip(&s.3) {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    assert!((x - y).abs() <= y.abs() * 1e-12, "{a:?} from the archive, {s:?} from the sink")
                }
                _ => assert_eq!(x, y, "{a:?} from the archive, {s:?} from the sink: missing in both or in neither"),
            }
        }
    }
    assert!(from_archive["runs"][1]["origin"].as_str().unwrap().starts_with("archive "), "{from_archive:#}");

    let screenshot = open_in_chromium(&dir.join("report.html"));
    eprintln!("screenshot of the two-run report: {}", screenshot.display());
}

#[test]
fn a_report_refuses_bad_input_before_it_starts_anything() {
    let project = Project::new();
    let output = project.run(&["report", "20990101T000000Z-0000"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no run `20990101T000000Z-0000`") && stderr.lines().count() == 1, "{stderr}");

    std::fs::create_dir(project.path().join("not-an-archive")).unwrap();
    let output = project.run(&["report", "not-an-archive"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("without manifest.json"), "{}", describe(&output));

    // A recorded run with the sink down: one line saying how to get a report anyway.
    let runs = project.data_dir().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let record = serde_json::json!({
        "format_version": 1, "id": "20261201T090000Z-0a1b", "name": "kafka", "status": "complete", "backend": "local",
        "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:10:00Z", "labels": {"greenflow_run": "20261201T090000Z-0a1b"},
    });
    std::fs::write(runs.join("20261201T090000Z-0a1b.json"), record.to_string()).unwrap();
    let output = project.run(&["report", "20261201T0900", "--out", "r"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the sink does not answer") && stderr.contains("greenflow archive 20261201T090000Z-0a1b"),
        "{stderr}"
    );
    assert!(!project.path().join("r").exists(), "no report is written");
    assert!(!project.data_dir().join("secrets").exists(), "no password is minted for a sink that never ran");
    std::fs::remove_dir_all(&runs).unwrap();

    set_config(&project, "report:\n  queries:\n    - name: lag\n      query: kafka_consumergroup_lag\n");
    let output = project.run(&["report", "x"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("report.queries[0].query") && stderr.contains("add greenflow_run=\"$run\""), "{stderr}");

    set_config(&project, "report:\n  idle:\n    watts: 40\n    run: abc\n");
    let output = project.run(&["report", "x"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("report.idle"), "{}", describe(&output));
    assert!(!project.data_dir().join("runs").exists(), "nothing was written");
}

/// A W3C WebDriver session on Debian's chromedriver driving headless Chromium: opens `page`, checks that it
/// rendered its tables and that every image loaded, and keeps a full-page screenshot in the test's temporary
/// target directory. Returns the screenshot's path.
fn open_in_chromium(page: &Path) -> PathBuf {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| common::which_program(name))
        .expect("Chromium is needed for the report's page test: scripts/install-deps installs Debian's chromium");
    let driver = common::which_program("chromedriver")
        .expect("chromedriver is needed for the report's page test: scripts/install-deps installs chromium-driver");
    let port = common::free_port();
    /// chromedriver and its session, ended when the test ends, whether it passes or panics: the session's end
    /// closes Chromium (killing the driver alone would leave Chromium running), then the driver is killed.
    struct Driver {
        child: std::process::Child,
        session: Option<String>,
    }
    impl Drop for Driver {
        fn drop(&mut self) {
            if let Some(url) = self.session.take() {
                let client = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build();
                let _ = client.map(|c| c.delete(url).send());
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
    let mut driver = Driver {
        child: std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        session: None,
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let call = |method: reqwest::Method, path: &str, body: Value| -> Value {
        let request = http.request(method, format!("{base}{path}"));
        let response = if body.is_null() { request } else { request.json(&body) }.send();
        let answer: Value = response.and_then(|r| r.json()).unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        assert!(answer["value"].get("error").is_none(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    };
    let started = std::time::Instant::now();
    while http.get(format!("{base}/status")).send().is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let session = call(
        reqwest::Method::POST,
        "/session",
        serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900", "--hide-scrollbars"]
        }}}}),
    );
    let id = session["sessionId"].as_str().unwrap().to_owned();
    driver.session = Some(format!("{base}/session/{id}"));
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    call(reqwest::Method::POST, &format!("/session/{id}/url"), serde_json::json!({ "url": url }));
    let script = "return new Promise(done => { const check = () => { \
        const images = [...document.images]; \
        if (images.every(i => i.complete)) done({ \
            images: images.length, loaded: images.filter(i => i.naturalWidth > 0).length, \
            tables: document.querySelectorAll('table').length, title: document.title, \
            height: document.documentElement.scrollHeight }); \
        else setTimeout(check, 50); }; check(); });";
    let page_state = call(
        reqwest::Method::POST,
        &format!("/session/{id}/execute/sync"),
        serde_json::json!({ "script": script, "args": [] }),
    );
    assert!(page_state["images"].as_u64().unwrap() >= 6, "{page_state}");
    assert_eq!(page_state["loaded"], page_state["images"], "every image of the page loads: {page_state}");
    assert_eq!(page_state["tables"], 2, "{page_state}");
    assert!(page_state["title"].as_str().unwrap().contains(" vs "), "{page_state}");
    // The whole page in one screenshot.
    let height = page_state["height"].as_u64().unwrap().min(12000);
    call(
        reqwest::Method::POST,
        &format!("/session/{id}/window/rect"),
        serde_json::json!({ "width": 1200, "height": height + 140 }),
    );
    let png = call(reqwest::Method::GET, &format!("/session/{id}/screenshot"), Value::Null);
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-two-runs.png");
    std::fs::write(&out, bytes).unwrap();
    out
}
