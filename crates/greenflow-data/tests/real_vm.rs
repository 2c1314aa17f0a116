//! Runs as data against real VictoriaMetrics: the version under test (`GREENFLOW_TEST_PROGRAMS`) and the other set
//! (`GREENFLOW_TEST_OTHER_PROGRAMS`, see `scripts/test`; the same one when it is not set), and real Nix as the
//! oracle of NAR hashes and store paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use greenflow_data::archive::{self, Created};
use greenflow_data::series::{Labels, Sample, ValueSpelling, render_line};
use greenflow_data::{ArchiveError, Imported, NarHash, Staging, VmEndpoint, Window};
use greenflow_runs::RunRecord;

/// A VictoriaMetrics child process on a free loopback port, killed on drop.
struct Vm {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of a program set; empty (the program found on PATH) when neither variable names one.
fn programs(var: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("GREENFLOW_TEST_PROGRAMS").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_default()
}

impl Vm {
    fn start(programs: &Path, dedup: bool) -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(programs.join("victoria-metrics"));
        command
            .arg(format!("-storageDataPath={}", data.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if dedup {
            command.arg("-dedup.minScrapeInterval=1ms");
        }
        let child = command.spawn().expect("victoria-metrics starts");
        let vm = Self { child, url: format!("http://127.0.0.1:{port}"), _data: data };
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("{}/health", vm.url);
        while off_runtime(|| reqwest::blocking::get(&health).map(|r| r.status().is_success()).ok()) != Some(true) {
            assert!(Instant::now() < deadline, "VictoriaMetrics at {} never became healthy", vm.url);
            std::thread::sleep(Duration::from_millis(100));
        }
        vm
    }

    fn endpoint(&self) -> VmEndpoint {
        VmEndpoint::new(&self.url, None)
    }

    fn import(&self, lines: &str) {
        off_runtime(|| self.import_blocking(lines));
    }

    fn import_blocking(&self, lines: &str) {
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/import", self.url))
            .body(lines.to_owned())
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{:?}", response.text());
        let _ = reqwest::blocking::get(format!("{}/internal/force_flush", self.url));
    }
}

/// Runs blocking HTTP on a thread of its own (reqwest's blocking client refuses to run inside tokio).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap())
}

const RUN: &str = "20261202T090000Z-0a1b";

/// A run three hours long that ended an hour ago (inside any retention), on whole seconds.
fn window() -> Window {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let to = (now - 3600) / 60 * 60 * 1000;
    Window { from_ms: to - 3 * 3_600_000 - 17_000, to_ms: to }
}

fn record(window: Window) -> RunRecord {
    let at = |ms: i64| time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap();
    let rfc = |ms| at(ms).format(&time::format_description::well_known::Rfc3339).unwrap();
    serde_json::from_value(serde_json::json!({
        "format_version": 1, "id": RUN, "name": "kafka-baseline", "status": "complete", "backend": "kube",
        "start": rfc(window.from_ms), "end": rfc(window.to_ms),
        "labels": {"greenflow_run": RUN, "greenflow_experiment": "kafka-baseline"},
        "versions": {"greenflow": "0.1.0", "victoria-metrics": "1.145.0"}
    }))
    .unwrap()
}

/// The run's series (12, every 15 s over the window, values of every awkward kind) and one of another run.
fn run_data(window: Window) -> BTreeMap<Labels, Vec<Sample>> {
    let mut data = BTreeMap::new();
    for i in 0..12 {
        let labels: Labels = [
            (
                "__name__".to_owned(),
                if i % 3 == 0 { "node_energy_joules_total".into() } else { format!("kafka_metric_{i}") },
            ),
            ("greenflow_run".to_owned(), RUN.to_owned()),
            ("instance".to_owned(), format!("node-{i}:9100")),
            ("note".to_owned(), "quote \" back\\slash é".to_owned()),
        ]
        .into();
        let samples: Vec<Sample> = (window.from_ms..window.to_ms)
            .step_by(15_000)
            .enumerate()
            .map(|(n, t)| {
                let value = match (i, n % 97) {
                    (1, 5) => f64::INFINITY,
                    (1, 6) => f64::NEG_INFINITY,
                    (2, _) => 0.1 * n as f64 + 1e-7,
                    _ => (n as f64) * 1.5 + i as f64,
                };
                (t, value)
            })
            .collect();
        data.insert(labels, samples);
    }
    data
}

fn load(vm: &Vm, data: &BTreeMap<Labels, Vec<Sample>>) {
    let mut lines = String::new();
    for (labels, samples) in data {
        lines.push_str(&render_line(labels, samples, ValueSpelling::Import));
        lines.push('\n');
    }
    lines.push_str(
        r#"{"metric":{"__name__":"other","greenflow_run":"20261202T080000Z-ffff"},"values":[1],"timestamps":["#,
    );
    lines.push_str(&format!("{}]}}\n", window().from_ms + 60_000));
    vm.import(&lines);
}

/// Every series and sample in an archive, read back from its files.
fn read_back(dir: &Path) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let manifest = archive::verify(dir).unwrap();
    let mut out: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for file in &manifest.files {
        for line in greenflow_data::staging::read_part(&dir.join(&file.path)).unwrap() {
            let (labels, samples) = greenflow_data::series::parse_line(&line.unwrap()).unwrap();
            out.entry(labels).or_default().extend(samples.into_iter().map(|(t, v)| (t, v.to_bits())));
        }
    }
    out
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        out.insert(entry.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&entry).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// The archive holds the run's series and no other run's, with their timestamps exactly and their values exactly or
/// within 1e-12 relative (VictoriaMetrics keeps a value as a decimal of up to 64 bits, not always the double itself).
fn assert_same_samples(found: &BTreeMap<Labels, Vec<(i64, u64)>>, expected: &BTreeMap<Labels, Vec<Sample>>) {
    assert_eq!(found.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "the run's series, no others");
    for (labels, samples) in expected {
        let got = &found[labels];
        assert_eq!(got.len(), samples.len(), "{labels:?}");
        for ((t, bits), (want_t, want)) in got.iter().zip(samples) {
            let value = f64::from_bits(*bits);
            assert_eq!(t, want_t, "{labels:?}");
            let close = value == *want || ((value - want) / want).abs() <= 1e-12;
            assert!(close, "{labels:?} at {t}: {value} where {want} was written");
        }
    }
}

async fn make_archive(vm: &Vm, record: &RunRecord, window: Window, out: &Path) -> archive::Archive {
    // VictoriaMetrics may take a moment to show what it took in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (archive, _) = archive::create(&vm.endpoint(), record, window, out, &mut |_| {}).await.unwrap();
        if archive.manifest.samples > 0 || Instant::now() > deadline {
            return archive;
        }
        std::fs::remove_dir_all(&archive.dir).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_goes_to_the_other_version_and_back_byte_identical() {
    let window = window();
    let record = record(window);
    let data = run_data(window);
    let first = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), true);
    load(&first, &data);
    let out = tempfile::tempdir().unwrap();
    let a = make_archive(&first, &record, window, &out.path().join("a")).await;
    assert_same_samples(&read_back(&a.dir), &data);
    assert_eq!(a.manifest.series, 12);
    assert_eq!(a.manifest.samples, data.values().map(|s| s.len() as u64).sum::<u64>());
    assert!(a.manifest.files.len() >= 4, "three hours and 17 s make four hour parts: {:?}", a.manifest.files);

    let other = Vm::start(&programs("GREENFLOW_TEST_OTHER_PROGRAMS"), true);
    let (_, imported) = greenflow_data::import(&a.dir, &other.endpoint(), false).await.unwrap();
    assert_eq!(imported, Imported::Written);
    let b = make_archive(&other, &a.manifest.run, window, &out.path().join("b")).await;
    assert_eq!(files(&a.dir), files(&b.dir), "the archive from the other version is byte-identical");
    assert_eq!(a.nar, b.nar);

    let (_, again) = greenflow_data::import(&a.dir, &other.endpoint(), false).await.unwrap();
    assert_eq!(again, Imported::AlreadyThere, "a second import writes nothing");
    let c = make_archive(&other, &a.manifest.run, window, &out.path().join("c")).await;
    assert_eq!(files(&a.dir), files(&c.dir), "and the data is as it was after one");

    // Archiving again into the same place keeps the intact archive.
    let (_, created) =
        archive::create(&other.endpoint(), &record, window, &out.path().join("b"), &mut |_| {}).await.unwrap();
    assert_eq!(created, Created::Existing);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_holding_part_of_the_run_is_not_given_it_twice() {
    let window = window();
    let data = run_data(window);
    let vm = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), false);
    load(&vm, &data);
    let out = tempfile::tempdir().unwrap();
    let a = make_archive(&vm, &record(window), window, out.path()).await;
    let fresh = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), false);
    let (first_labels, first_samples) = data.iter().next().unwrap();
    fresh.import(&format!("{}\n", render_line(first_labels, &first_samples[..10], ValueSpelling::Import)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = greenflow_data::import(&a.dir, &fresh.endpoint(), false).await.unwrap_err();
    assert!(matches!(err, ArchiveError::Overlap { samples: 10, .. }), "{err}");
    assert!(err.to_string().contains("--merge"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_archive_is_refused_with_the_file_named_and_nothing_written() {
    let window = window();
    let vm = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), true);
    load(&vm, &run_data(window));
    let out = tempfile::tempdir().unwrap();
    let good = make_archive(&vm, &record(window), window, &out.path().join("good")).await;
    let copy = |name: &str| {
        let dir = out.path().join(name).join(good.dir.file_name().unwrap());
        std::fs::create_dir_all(dir.join("data")).unwrap();
        for (path, bytes) in files(&good.dir) {
            std::fs::write(dir.join(path), bytes).unwrap();
        }
        dir
    };
    let second = &good.manifest.files[1].path;

    let flipped = copy("flipped");
    let mut bytes = std::fs::read(flipped.join(second)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(flipped.join(second), bytes).unwrap();
    let removed = copy("removed");
    std::fs::remove_file(removed.join(second)).unwrap();
    let edited = copy("edited");
    let manifest = std::fs::read_to_string(edited.join("manifest.json")).unwrap();
    std::fs::write(edited.join("manifest.json"), manifest.replacen("kafka-baseline", "kafka-tuned", 1)).unwrap();
    let added = copy("added");
    std::fs::write(added.join("data/extra.jsonl.gz"), b"").unwrap();

    let target = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), true);
    for (dir, file, problem) in [
        (&flipped, second.as_str(), "has sha256"),
        (&removed, second.as_str(), "is missing"),
        (&edited, "manifest.json", "was edited"),
        (&added, "data/extra.jsonl.gz", "is not in the manifest"),
    ] {
        let err = archive::verify(dir).unwrap_err().to_string();
        assert!(err.contains(&format!("{file} {problem}")), "{err}");
        let err = greenflow_data::import(dir, &target.endpoint(), false).await.unwrap_err().to_string();
        assert!(err.contains(file), "{err}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_scratch, held) = greenflow_data::import::snapshot(&target.endpoint(), &good.manifest).await.unwrap();
    assert!(held.is_empty(), "nothing reached the sink: {held:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_fetch_resumes_to_the_same_files() {
    let window = window();
    let vm = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), true);
    load(&vm, &run_data(window));
    let out = tempfile::tempdir().unwrap();
    let whole = make_archive(&vm, &record(window), window, &out.path().join("whole")).await;
    let selector = whole.manifest.selector.clone();

    let dir = out.path().join("interrupted");
    let (parts_seen, mut parts) = tokio::sync::mpsc::unbounded_channel();
    {
        let mut staging = Staging::open(&dir, &selector, window).unwrap();
        let endpoint = vm.endpoint();
        let mut progress = |p: greenflow_data::FetchProgress| {
            let _ = parts_seen.send(p.done_ms);
        };
        let fetch = staging.fetch_all(&endpoint, &mut progress);
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                _ = &mut fetch => panic!("the fetch ended before it was interrupted"),
                Some(done) = parts.recv() => if done > 0 { break },
            }
        }
    }
    // The fetch may have finished another part in the poll that reported the first (one report per part).
    let mut done_parts = 1;
    while let Ok(done) = parts.try_recv() {
        if done > 0 {
            done_parts += 1;
        }
    }
    assert!(done_parts < whole.manifest.files.len(), "the fetch was interrupted before its end");
    // A kill can also leave a part half-written.
    std::fs::write(dir.join("data/0000000000000-0000000000001.jsonl.gz.tmp"), b"half").unwrap();
    let mut staging = Staging::open(&dir, &selector, window).unwrap();
    assert!(staging.resumed());
    assert_eq!(staging.parts().len(), done_parts, "the parts done when it stopped are kept");
    staging.fetch_all(&vm.endpoint(), &mut |_| {}).await.unwrap();
    let parts = staging.finish().unwrap();
    assert_eq!(parts, whole.manifest.files);
    let left: Vec<_> = std::fs::read_dir(dir.join("data")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), parts.len(), "only the parts are left: {left:?}");
    for part in &parts {
        assert_eq!(std::fs::read(dir.join(&part.path)).unwrap(), std::fs::read(whole.dir.join(&part.path)).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_hashes_and_store_path_are_nix_own() {
    let window = window();
    let vm = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), true);
    load(&vm, &run_data(window));
    let out = tempfile::tempdir().unwrap();
    let archive = make_archive(&vm, &record(window), window, out.path()).await;
    assert_eq!(archive.nar.nix_base32(), nix_hash(&archive.dir));
    let stored =
        Command::new("nix-store").args(["--add-fixed", "--recursive", "sha256"]).arg(&archive.dir).output().unwrap();
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), archive.store_path);
    assert_eq!(archive.nar, NarHash::of_path(&archive.dir).unwrap());
}

/// `nix-hash --type sha256 --base32 PATH`: the NAR hash of PATH, by Nix.
pub fn nix_hash(path: &Path) -> String {
    let output = Command::new("nix-hash").args(["--type", "sha256", "--base32"]).arg(path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_import_of_a_run_the_sink_re_rounded_writes_nothing() {
    // One series whose small values and one huge value reach the first sink in two imports (two parts, each block
    // with its own decimal exponent, so exact) and the second sink in one (one block: the small values lose digits).
    let window = window();
    let labels: Labels =
        [("__name__".to_owned(), "mixed_magnitudes".to_owned()), ("greenflow_run".to_owned(), RUN.to_owned())].into();
    let small: Vec<Sample> = (0..20).map(|n| (window.from_ms + 1_000 * n, 0.123_456_789_012_3 + n as f64)).collect();
    let huge: Vec<Sample> = vec![(window.from_ms + 30_000, 9.876_543_210_987e15)];
    let first = Vm::start(&programs("GREENFLOW_TEST_PROGRAMS"), true);
    first.import(&format!("{}\n", render_line(&labels, &small, ValueSpelling::Import)));
    first.import(&format!("{}\n", render_line(&labels, &huge, ValueSpelling::Import)));
    let out = tempfile::tempdir().unwrap();
    let a = make_archive(&first, &record(window), window, out.path()).await;
    assert_eq!(a.manifest.samples, 21);

    let other = Vm::start(&programs("GREENFLOW_TEST_OTHER_PROGRAMS"), true);
    let (_, imported) = greenflow_data::import(&a.dir, &other.endpoint(), false).await.unwrap();
    assert!(matches!(imported, Imported::WrittenRounded { .. }), "the values came back re-rounded: {imported:?}");
    let (_, again) = greenflow_data::import(&a.dir, &other.endpoint(), false).await.unwrap();
    assert_eq!(again, Imported::AlreadyThere, "the sink holds the run as it rounded it: nothing to write");
}
