//! Grafana cannot be installed on the test machines, so these tests give the sink a stand-in `grafana` binary (a small
//! Python HTTP server) that checks the command line Grafana gets, reads the generated grafana.ini as Grafana would
//! for its port, and answers `/api/health`. The generated files are checked for their content.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Project, describe, fake_grafana};
use serde_json::Value;

fn project_with_grafana() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_grafana(dir.path());
    let project = Project::with_config(&format!("    binary: {}\n", binary.display()));
    // Keep the fake's folder alive with the project.
    std::mem::forget(dir);
    project
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn grafana_runs_behind_caddy_with_generated_files() {
    let project = project_with_grafana();
    project.sink_up();

    let status: Value = serde_json::from_str(&project.ok(&["sink", "status", "--json"])).unwrap();
    let grafana = status["components"].as_array().unwrap().iter().find(|c| c["name"] == "grafana").unwrap().clone();
    assert_eq!(grafana["healthy"], true, "{status}");
    assert_eq!(grafana["version"], "12.0.0");
    assert_eq!(grafana["listen"], format!("127.0.0.1:{}", project.ports.grafana));

    // Through Caddy's /grafana/ route, with Grafana's own (no basic) auth.
    let body: Value = reqwest::blocking::get(format!("http://127.0.0.1:{}/grafana/api/health", project.ports.http))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["path"], "/grafana/api/health", "the sub-path reaches Grafana unchanged");

    let state = project.state_dir().join("sink/grafana");
    let data = project.data_dir();
    let ini = std::fs::read_to_string(state.join("grafana.ini")).unwrap();
    let admin_file = data.join("secrets/grafana-admin-password");
    let key_file = data.join("secrets/grafana-secret-key");
    assert!(ini.contains(&format!("admin_password = \"\"\"$__file{{{}}}\"\"\"", admin_file.display())), "{ini}");
    assert!(ini.contains(&format!("secret_key = \"\"\"$__file{{{}}}\"\"\"", key_file.display())), "{ini}");
    assert!(ini.contains("serve_from_sub_path = true"), "{ini}");
    assert!(ini.contains(&format!("root_url = \"\"\"http://127.0.0.1:{}/grafana/\"\"\"", project.ports.http)), "{ini}");
    assert!(ini.contains(&format!("data = \"\"\"{}\"\"\"", data.join("grafana").display())), "{ini}");
    for secret in [&admin_file, &key_file] {
        assert_eq!(mode(secret), 0o600, "{}", secret.display());
        let value = std::fs::read_to_string(secret).unwrap();
        assert!(value.len() >= 32);
        assert!(!ini.contains(&value), "a secret in grafana.ini");
    }

    let datasources: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(state.join("provisioning/datasources/greenflow.yaml")).unwrap())
            .unwrap();
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["uid"].as_str(), Some("greenflow-victoriametrics"));
    // Grafana queries through Caddy as the reader, with the password it reads from the file the provisioning names.
    assert_eq!(ds["url"].as_str().unwrap(), format!("http://127.0.0.1:{}/vm", project.ports.http));
    assert_eq!(ds["basicAuth"].as_bool(), Some(true));
    assert_eq!(ds["basicAuthUser"].as_str(), Some("greenflow-reader"));
    let reader_file = data.join("secrets/sink-reader-password");
    assert_eq!(
        ds["secureJsonData"]["basicAuthPassword"].as_str().unwrap(),
        format!("$__file{{{}}}", reader_file.display())
    );
    assert_eq!(mode(&reader_file), 0o600);
    let reader_password = std::fs::read_to_string(&reader_file).unwrap();
    let client = reqwest::blocking::Client::new();
    let as_grafana = |path: &str| {
        client
            .get(format!("{}{path}", ds["url"].as_str().unwrap()))
            .basic_auth("greenflow-reader", Some(reader_password.trim()))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(as_grafana("/api/v1/query?query=up"), 200);
    assert_eq!(as_grafana("/api/v1/export?match[]=up"), 401);
    assert_eq!(ds["isDefault"].as_bool(), Some(true));
    let providers: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(state.join("provisioning/dashboards/greenflow.yaml")).unwrap())
            .unwrap();
    let dashboards = Path::new(providers["providers"][0]["options"]["path"].as_str().unwrap()).to_owned();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboards.join("greenflow-experiment.json")).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "greenflow-experiment");
}

#[test]
fn grafana_admin_password_from_the_environment_is_passed_by_file() {
    let project = project_with_grafana().env("GRAFANA_ADMIN_PASSWORD", "env-admin-pw-123");
    let up = project.run(&["sink", "up", "--detach"]);
    assert!(up.status.success(), "{}", describe(&up));
    let state = project.state_dir().join("sink/grafana");
    let ini = std::fs::read_to_string(state.join("grafana.ini")).unwrap();
    assert!(!ini.contains("env-admin-pw-123"));
    let file = state.join("admin-password");
    assert!(ini.contains(&format!("$__file{{{}}}", file.display())), "{ini}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "env-admin-pw-123");
    assert_eq!(mode(&file), 0o600);
    assert!(!project.data_dir().join("secrets/grafana-admin-password").exists());
}

#[test]
fn grafana_without_its_home_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_grafana(dir.path());
    std::fs::remove_file(dir.path().join("grafana-home/conf/defaults.ini")).unwrap();
    let project = Project::with_config(&format!("    binary: {}\n", binary.display()));
    project.sink_up();
    let output = project.run(&["sink", "status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let grafana = status["components"].as_array().unwrap().iter().find(|c| c["name"] == "grafana").unwrap().clone();
    assert_eq!(grafana["installed"], true);
    assert_eq!(grafana["running"], false);
    assert!(grafana["detail"].as_str().unwrap().contains("sink.grafana.homepath"), "{grafana}");
}
