//! End-to-end tests of runs as data: a real run on the `local` back-end (Prometheus agent, node-exporter, Caddy,
//! VictoriaMetrics), then `greenflow export`, `archive`, `archive verify` and `import` into a second sink.

mod common;

use std::path::Path;

use common::{Project, describe};
use serde_json::Value;

const CONFIG: &str = "local:\n  scrape_interval: 1s\nremote_write:\n  batch_send_deadline: 1s\n  max_backoff: 2s\n\
                      run:\n  drain_timeout: 3m\n  first_sample_timeout: 60s\n";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn count_csv_rows(path: &Path) -> u64 {
    let mut reader = csv::Reader::from_path(path).unwrap();
    assert_eq!(reader.headers().unwrap(), vec!["metric", "labels", "timestamp_ms", "value"]);
    reader.records().inspect(|r| assert!(r.is_ok(), "{r:?}")).count() as u64
}

fn count_parquet_rows(path: &Path) -> u64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    assert_eq!(columns, ["metric", "labels", "timestamp", "value"]);
    reader.metadata().file_metadata().num_rows() as u64
}

#[test]
fn a_run_exports_archives_and_imports_into_another_sink() {
    let project = Project::with_config(CONFIG);
    project.sink_up();
    let output = project.run(&["run", "kafka-baseline", "--backend", "local", "--duration", "5s"]);
    assert!(output.status.success(), "{}", describe(&output));
    let run = project.runs()[0].clone();
    let id = run["id"].as_str().unwrap().to_owned();

    // The archive, with what the README promises of --json.
    let out = project.path().join("archives");
    let made = json(&project.ok(&["archive", &id[..12], "--out", out.to_str().unwrap(), "--json"]));
    let dir = Path::new(made["dir"].as_str().unwrap()).to_owned();
    assert_eq!(dir.file_name().unwrap().to_str().unwrap(), format!("greenflow-run-kafka-baseline-{id}"));
    let samples = made["samples"].as_u64().unwrap();
    assert!(samples >= run["samples"].as_u64().unwrap(), "{made} holds at least the record's count: {run}");
    assert!(made["nar_hash"].as_str().unwrap().starts_with("sha256-"), "{made}");
    assert!(made["store_path"].as_str().unwrap().ends_with(&format!("-greenflow-run-kafka-baseline-{id}")));
    assert_eq!(made["created"], "new");
    let manifest = json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap());
    assert_eq!(manifest["run"], run, "the manifest carries the run record");

    // Exports in every format hold every sample once.
    for format in ["jsonl", "csv", "parquet"] {
        eprintln!("{}", project.ok(&["export", &id, "--format", format, "--out", "exports"]));
        let file = project.path().join(format!("exports/kafka-baseline-{id}.{format}"));
        let rows = match format {
            "csv" => count_csv_rows(&file),
            "parquet" => count_parquet_rows(&file),
            _ => std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|l| json(l)["values"].as_array().unwrap().len() as u64)
                .sum(),
        };
        assert_eq!(rows, samples, "{format}");
    }
    assert!(
        !std::fs::read_dir(project.path().join("exports")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no checkpoint is left behind"
    );

    let verified = json(&project.ok(&["archive", "verify", dir.to_str().unwrap(), "--json"]));
    assert_eq!(verified["nar_hash"], made["nar_hash"]);
    let wrong = project.run(&["archive", "verify", dir.to_str().unwrap(), "--expect", "sha256-AAAA"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", describe(&wrong));

    // Into a second, empty sink: the record comes along, and the archive made there is the same.
    let other = Project::with_config(CONFIG);
    other.sink_up();
    let imported = other.ok(&["import", dir.to_str().unwrap()]);
    assert!(imported.contains(&format!("imported run {id}")), "{imported}");
    assert!(imported.contains("verified"), "{imported}");
    assert_eq!(other.runs(), vec![run.clone()], "the run record is restored");
    let again = other.ok(&["import", dir.to_str().unwrap()]);
    assert!(again.contains("nothing written"), "{again}");
    let remade = json(&other.ok(&["archive", &id, "--out", "copy", "--json"]));
    // VictoriaMetrics keeps values as decimals per block, so real data can come back re-rounded (which import
    // says); otherwise the archive from the other sink is the same, byte for byte.
    if !imported.contains("re-rounded") {
        assert_eq!(remade["nar_hash"], made["nar_hash"], "the same run gives the same archive from the other sink");
    }
    assert_eq!(remade["samples"], made["samples"]);
    assert_eq!(remade["series"], made["series"]);

    // A tampered copy is refused before anything is written, the file named.
    let victim = manifest["files"][0]["path"].as_str().unwrap().to_owned();
    let mut bytes = std::fs::read(dir.join(&victim)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(dir.join(&victim), bytes).unwrap();
    let refused = project.run(&["import", dir.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("greenflow:")).collect();
    assert!(errors.len() == 1 && errors[0].contains(&victim), "one line naming the file: {stderr}");
    assert_eq!(other.runs().len(), 1);
}
