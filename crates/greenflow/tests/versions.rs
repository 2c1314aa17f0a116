//! Running on the releases users run: fail-fast start-up, the data directory's last writer, sinks run by a service
//! manager, and what a packaged CLI ships (completions, man pages).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Project, describe};
use serde_json::Value;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Points `sink.victoria_metrics.binary` of the project's configuration at `binary`.
fn set_vm_binary(project: &Project, binary: &Path) {
    let path = project.path().join("greenflow.yaml");
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("  victoria_metrics:\n", &format!("  victoria_metrics:\n    binary: {}\n", binary.display()));
    std::fs::write(path, config).unwrap();
}

#[test]
fn a_component_that_exits_at_start_up_stops_the_sink_with_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("victoria-metrics");
    // No version string (as Debian's builds) but VictoriaMetrics' flags, then fails as VictoriaMetrics does.
    script(
        &broken,
        r#"case "$1" in -version) exit 0 ;; -help) printf '  -httpListenAddr array\n  -retentionPeriod value\n' >&2; exit 0 ;; esac
echo "2026-12-01T10:00:00.000Z	fatal	app/victoria-metrics/main.go:62	cannot parse path to part: unexpected number of substrings" >&2
exit 3"#,
    );
    let project = Project::new();
    set_vm_binary(&project, &broken);
    for args in [&["sink", "up"][..], &["sink", "up", "--detach"][..], &["demo", "--for", "5s"][..]] {
        let started = Instant::now();
        let output = project.run(args);
        let took = started.elapsed();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        let err = stderr(&output);
        assert!(err.contains("victoria-metrics exited during start-up"), "{args:?}: {err}");
        assert!(err.contains("exit status: 3"), "{args:?}: {err}");
        assert!(err.contains("cannot parse path to part"), "the component's own message: {err}");
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}: no blind restarts for a minute");
        assert!(!project.state_dir().join("sink/sink.json").exists(), "{args:?}: a sink state left behind");
    }
    common::assert_no_process_mentions(&project.path().display().to_string(), Duration::from_secs(5));
}

#[test]
fn an_older_victoria_metrics_is_refused_on_data_a_newer_one_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("victoria-metrics");
    let started = dir.path().join("started");
    script(
        &old,
        &format!(
            "case \"$1\" in -version) echo victoria-metrics-20220802-100000-tags-v1.79.5-0-g1234; exit 0 ;; esac\n\
             touch '{}'\nsleep 30",
            started.display()
        ),
    );
    let project = Project::new();
    set_vm_binary(&project, &old);
    let data = project.data_dir().join("victoria-metrics");
    std::fs::create_dir_all(data.join("data")).unwrap();
    let record = serde_json::json!({
        "format_version": 1,
        "release": {"detected": "reported", "version": {"major": 1, "minor": 145, "patch": 0}, "text": "1.145.0"},
        "binary": "/nix/store/abc-victoriametrics-1.145.0/bin/victoria-metrics",
    });
    std::fs::write(data.join("greenflow-writer.json"), record.to_string()).unwrap();
    let before = snapshot(&project.data_dir());

    for args in [&["sink", "up"][..], &["sink", "up", "--detach"][..], &["demo", "--for", "5s"][..]] {
        let output = project.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        let err = stderr(&output);
        assert!(err.contains("1.79.5") && err.contains("1.145.0"), "names both releases: {err}");
        assert!(err.contains("sink.victoria_metrics.binary"), "says the fix: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!started.exists(), "{args:?}: the old VictoriaMetrics was started on the newer data");
        assert_eq!(snapshot(&project.data_dir()), before, "{args:?}: the data directory changed");
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walk(dir)
        .into_iter()
        .map(|p| (p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap_or_default()))
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn a_binary_that_is_not_the_program_is_refused_before_anything_starts() {
    let project = Project::new();
    set_vm_binary(&project, Path::new("/bin/true"));
    let output = project.run(&["sink", "up", "--detach"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let err = stderr(&output);
    assert!(err.contains("`/bin/true`") && err.contains("does not answer as VictoriaMetrics"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!project.state_dir().exists() && !project.data_dir().exists(), "something was written");
}

#[test]
fn the_real_victoria_metrics_leaves_a_record_of_its_release() {
    let project = Project::new();
    project.sink_up();
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(project.data_dir().join("victoria-metrics/greenflow-writer.json")).unwrap(),
    )
    .unwrap();
    let detected = record["release"]["detected"].as_str().unwrap();
    assert!(detected == "reported" || detected == "inferred", "{record}");
    assert_eq!(
        record["release"]["version"]["major"].as_u64().or(record["release"]["at_least"]["major"].as_u64()),
        Some(1)
    );
    // The sink still starts on its own data, again.
    project.ok(&["sink", "down"]);
    project.sink_up();
}

#[test]
fn a_sink_run_by_a_service_manager_is_used_not_doubled() {
    // A sink on the configured ports that this greenflow does not supervise: one started from another state
    // directory stands in for the NixOS or home-manager module's services.
    let service = Project::new().env("GREENFLOW_SINK_PASSWORD", "service-managed-password-123");
    service.sink_up();
    // The same data directory (a module's greenflow.yaml names the service's), another state directory.
    let user = Project::with_config("")
        .env("GREENFLOW_SINK_PASSWORD", "service-managed-password-123")
        .env("XDG_DATA_HOME", service.path().join("xdg-data").to_str().unwrap());
    let config = std::fs::read_to_string(service.path().join("greenflow.yaml")).unwrap();
    std::fs::write(user.path().join("greenflow.yaml"), config).unwrap();

    let status = user.run(&["sink", "status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    let json: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["running"], true, "{json}");
    assert_eq!(json["managed_by"], "unsupervised", "{json}");
    let caddy = json["components"].as_array().unwrap().iter().find(|c| c["name"] == "caddy").unwrap().clone();
    assert_eq!(caddy["healthy"], true, "{caddy}");
    assert!(user.ok(&["sink", "status"]).contains("not supervised by greenflow"));

    let up = user.run(&["sink", "up", "--detach"]);
    assert!(up.status.success(), "{}", describe(&up));
    assert!(stderr(&up).contains("already answers"), "{}", describe(&up));
    assert!(!user.state_dir().join("sink/sink.json").exists(), "a second sink was started");

    let demo = user.run(&["demo", "--for", "3s"]);
    assert!(demo.status.success(), "{}", describe(&demo));
    assert!(stderr(&demo).contains("using the running sink"), "{}", describe(&demo));
    assert!(!user.state_dir().join("sink/sink.json").exists(), "the demo started a second sink");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let project = Project::new();
    for (shell, needle) in [("bash", "_greenflow()"), ("zsh", "#compdef greenflow"), ("fish", "complete -c greenflow")]
    {
        let script = project.ok(&["completions", shell]);
        assert!(script.contains(needle), "{shell}: {}", &script[..script.len().min(300)]);
        assert!(script.contains("recover"), "{shell}: subcommands are completed");
    }
    let out = project.path().join("man");
    project.ok(&["man", "--out", out.to_str().unwrap()]);
    let main = std::fs::read_to_string(out.join("greenflow.1")).unwrap();
    assert!(main.starts_with(".ie") || main.contains(".TH greenflow"), "{}", &main[..main.len().min(200)]);
    let up = std::fs::read_to_string(out.join("greenflow-sink-up.1")).unwrap();
    assert!(up.contains("detach"), "the sink up page documents its flags");
    let bad = project.run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
}
