//! The commands that need no running sink: `init`, `config show`, `sink url`, `runs`, `--help`.

mod common;

use common::{Project, describe};
use serde_json::Value;

#[test]
fn init_writes_three_files_and_never_overwrites_without_force() {
    let project = Project::new();
    std::fs::remove_file(project.path().join("greenflow.yaml")).unwrap();
    let out = project.ok(&["init"]);
    for name in ["greenflow.yaml", ".secrets.env.example", ".envrc"] {
        assert!(project.path().join(name).is_file(), "{name} missing:\n{out}");
    }
    let envrc = std::fs::read_to_string(project.path().join(".envrc")).unwrap();
    assert!(envrc.contains("use flake") && envrc.contains("dotenv_if_exists .secrets.env"), "{envrc}");
    let example = std::fs::read_to_string(project.path().join(".secrets.env.example")).unwrap();
    for var in [
        "GREENFLOW_SINK_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "TS_AUTHKEY",
        "NODENAME",
        "TAILSCALE_DOMAIN",
        "EXPERIMENT_STORAGE_URL",
    ] {
        assert!(example.contains(var), "{var} not documented");
    }
    // The written configuration is valid and means the defaults.
    let shown: Value = serde_json::from_str(&project.ok(&["config", "show", "--json"])).unwrap();
    assert_eq!(shown["config"]["sink"]["retention"], "100y");

    std::fs::write(project.path().join(".envrc"), "mine\n").unwrap();
    let again = project.run(&["init"]);
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(project.path().join(".envrc")).unwrap(), "mine\n", "nothing overwritten");
    project.ok(&["init", "--force"]);
    assert_ne!(std::fs::read_to_string(project.path().join(".envrc")).unwrap(), "mine\n");
}

#[test]
fn config_show_redacts_secrets_and_merges_the_environment() {
    let project = Project::new()
        .env("GREENFLOW_SINK_PASSWORD", "s3cret-value")
        .env("NODENAME", "laptop")
        .env("TAILSCALE_DOMAIN", "tail1234.ts.net");
    std::fs::write(project.path().join(".secrets.env"), "GRAFANA_ADMIN_PASSWORD=also-s3cret\n").unwrap();
    let json: Value = serde_json::from_str(&project.ok(&["config", "show", "--json"])).unwrap();
    assert_eq!(json["secrets"]["GREENFLOW_SINK_PASSWORD"], "set");
    assert_eq!(json["secrets"]["GRAFANA_ADMIN_PASSWORD"], "set");
    assert_eq!(json["secrets"]["TS_AUTHKEY"], "not set");
    assert_eq!(json["public_remote_write_url"], "https://laptop.tail1234.ts.net/vm/api/v1/write");
    assert_eq!(json["config"]["sink"]["http_port"], project.ports.http);
    let text = project.ok(&["config", "show"]);
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!json.to_string().contains("s3cret"));
}

#[test]
fn sink_url_json_has_the_documented_fields() {
    let project = Project::new();
    let json: Value = serde_json::from_str(&project.ok(&["sink", "url", "--json"])).unwrap();
    let base = format!("http://127.0.0.1:{}", project.ports.http);
    assert_eq!(json["remote_write_url"], format!("{base}/vm/api/v1/write"));
    assert_eq!(json["query_url"], format!("{base}/vm"));
    assert_eq!(json["grafana_url"], format!("{base}/grafana/"));
    assert_eq!(json["username"], "greenflow");
    assert!(json.get("password").is_none(), "no password without --show-password");
}

#[test]
fn sink_url_public_uses_the_configured_host() {
    let project = Project::with_config("").env("EXPERIMENT_STORAGE_URL", "https://sink.example.org/vm/api/v1/write");
    let json: Value = serde_json::from_str(&project.ok(&["sink", "url", "--public", "--json"])).unwrap();
    assert_eq!(json["remote_write_url"], "https://sink.example.org/vm/api/v1/write");
    assert_eq!(json["query_url"], "https://sink.example.org/vm");

    let none = Project::new();
    let output = none.run(&["sink", "url", "--public"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sink.public_host"), "{}", describe(&output));
}

#[test]
fn runs_are_empty_at_first_and_unknown_ids_are_clear_errors() {
    let project = Project::new();
    assert_eq!(project.ok(&["runs", "list", "--json"]).trim(), "[]");
    let output = project.run(&["runs", "show", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("runs list"), "{}", describe(&output));
}

#[test]
fn help_teaches_and_bad_flags_exit_2() {
    let project = Project::new();
    let help = project.ok(&["--help"]);
    for word in ["sink", "demo", "runs", "Exit status"] {
        assert!(help.contains(word), "{help}");
    }
    let output = project.run(&["demo", "--for", "soon"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("30s"), "{}", describe(&output));
    let output = project.run(&["demo", "--name", "no spaces allowed"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("run name"), "{}", describe(&output));
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let project = Project::new();
    let output = project.run(&["--config", "nope.yaml", "sink", "status"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("greenflow init"), "{}", describe(&output));
}

#[test]
fn values_are_printed_for_the_public_address_only() {
    let project = Project::new().env("NODENAME", "laptop").env("TAILSCALE_DOMAIN", "tail1234.ts.net");
    let text = project.ok(&["values"]);
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let rw = &doc["prometheus"]["prometheusSpec"]["remoteWrite"][0];
    assert_eq!(rw["url"].as_str(), Some("https://laptop.tail1234.ts.net/vm/api/v1/write"));
    assert_eq!(rw["basicAuth"]["password"]["name"].as_str(), Some("greenflow-remote-write"));

    let output = Project::new().run(&["values"]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("sink.public_host"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
