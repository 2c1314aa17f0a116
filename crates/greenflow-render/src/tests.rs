//! Snapshots of every template with typical inputs, and the escapers' edge cases.

use std::path::PathBuf;
use std::time::Duration;

use crate::escape::{check_caddy_token, check_ini_value, prometheus_duration};
use crate::*;

pub(crate) fn caddy_input() -> CaddyfileInput {
    CaddyfileInput {
        admin_listen: "unix//state/greenflow/sink/caddy/admin/admin.sock".into(),
        loopback_port: 8080,
        public_site: None,
        public_bind: Vec::new(),
        username: "greenflow".into(),
        password_hash: "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".into(),
        writer_username: "greenflow-writer".into(),
        writer_password_hash: "$2b$04$zyxwvutsrqponmlkjihgfeMmfDSn8SSv.1Z5v4r2sWIPOrNGxBZ1y".into(),
        reader_username: "greenflow-reader".into(),
        reader_password_hash: "$2b$04$readerreaderreaderreaOMmfDSn8SSv.1Z5v4r2sWIPOrNGxBZ1y".into(),
        victoria_metrics: "127.0.0.1:8428".into(),
        grafana: None,
        auth_directive: AuthDirective::Basicauth,
        public_aliases: Vec::new(),
        funnel_port: None,
    }
}

pub(crate) fn grafana_input() -> GrafanaInput {
    GrafanaInput {
        port: 3000,
        domain: "laptop.tail1234.ts.net".into(),
        root_url: "https://laptop.tail1234.ts.net/grafana/".into(),
        data_dir: PathBuf::from("/data/greenflow/grafana"),
        logs_dir: PathBuf::from("/state/greenflow/sink/logs"),
        provisioning_dir: PathBuf::from("/state/greenflow/sink/grafana/provisioning"),
        dashboards_dir: PathBuf::from("/state/greenflow/sink/grafana/dashboards"),
        admin_user: "admin".into(),
        admin_password_file: PathBuf::from("/data/greenflow/secrets/grafana-admin-password"),
        secret_key_file: PathBuf::from("/data/greenflow/secrets/grafana-secret-key"),
        datasource_url: "http://127.0.0.1:8080/vm".into(),
        datasource_user: "greenflow-reader".into(),
        datasource_password_file: PathBuf::from("/data/greenflow/secrets/sink-reader-password"),
        scrape_interval: Duration::from_secs(5),
    }
}

pub(crate) fn agent_input() -> AgentConfigInput {
    AgentConfigInput {
        scrape_interval: Duration::from_secs(5),
        external_labels: vec![
            ("greenflow_experiment".into(), "kafka-vs-redpanda".into()),
            ("greenflow_run".into(), "20261125T175018Z-3fa1".into()),
        ],
        scrape_jobs: vec![ScrapeJob { name: "node-exporter".into(), target: "127.0.0.1:9100".into() }],
        remote_write: vec![RemoteWriteTarget {
            name: "greenflow-sink".into(),
            url: "http://127.0.0.1:8080/vm/api/v1/write".into(),
            username: "greenflow".into(),
            password_file: "/state/greenflow/local-cluster/x/remote-write-password".into(),
            proxy_url: Some("http://127.0.0.1:1055".into()),
        }],
        queue: QueueConfig {
            capacity: 20_000,
            max_samples_per_send: 10_000,
            batch_send_deadline: Duration::from_secs(5),
            max_shards: 10,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        },
    }
}

#[test]
fn caddyfile_loopback_only() {
    insta::assert_snapshot!(render_caddyfile(&caddy_input()).unwrap());
}

#[test]
fn caddyfile_with_tailnet_site_grafana_and_new_directive() {
    let input = CaddyfileInput {
        public_site: Some("https://laptop.tail1234.ts.net".into()),
        public_bind: vec!["100.101.102.103".parse().unwrap(), "fd7a:115c:a1e0::1234:5678".parse().unwrap()],
        grafana: Some("127.0.0.1:3000".into()),
        auth_directive: AuthDirective::BasicAuth,
        ..caddy_input()
    };
    insta::assert_snapshot!(render_caddyfile(&input).unwrap());
}

#[test]
fn grafana_files() {
    let files = render_grafana(&grafana_input()).unwrap();
    insta::assert_snapshot!("grafana_ini", files.ini);
    insta::assert_snapshot!("grafana_datasources", files.datasources);
    insta::assert_snapshot!("grafana_dashboards", files.dashboards);
}

#[test]
fn grafana_datasource_has_the_fixed_uid_the_dashboard_uses() {
    let files = render_grafana(&grafana_input()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&files.datasources).unwrap();
    assert_eq!(doc["datasources"][0]["uid"].as_str(), Some(DATASOURCE_UID));
    assert_eq!(doc["datasources"][0]["type"].as_str(), Some("prometheus"));
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
    let text = dashboard.to_string();
    assert!(text.contains(DATASOURCE_UID));
    assert!(!text.contains("\"uid\":\"prometheus\""), "every panel uses the provisioned datasource");
}

#[test]
fn agent_config() {
    insta::assert_snapshot!(render_agent_config(&agent_input()).unwrap());
}

#[test]
fn agent_config_is_what_prometheus_reads() {
    let text = render_agent_config(&agent_input()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let rw = &doc["remote_write"][0];
    assert_eq!(rw["queue_config"]["max_samples_per_send"].as_u64(), Some(10_000), "numbers stay numbers");
    assert_eq!(rw["queue_config"]["min_backoff"].as_str(), Some("500ms"));
    assert_eq!(
        rw["basic_auth"]["password_file"].as_str(),
        Some("/state/greenflow/local-cluster/x/remote-write-password")
    );
    assert!(rw["basic_auth"]["password"].is_null(), "the password itself never appears");
    assert_eq!(doc["global"]["external_labels"]["greenflow_run"].as_str(), Some("20261125T175018Z-3fa1"));
}

#[test]
fn bad_label_names_are_refused() {
    let mut input = agent_input();
    input.external_labels.push(("1bad".into(), "x".into()));
    let err = render_agent_config(&input).unwrap_err().to_string();
    assert!(err.contains("1bad"), "{err}");
}

#[test]
fn caddy_tokens_refuse_what_caddy_would_change() {
    for ok in ["greenflow", "ünïcødé-user.name@lab", "a'b", "x$y", "100%", "🙂"] {
        assert!(check_caddy_token("f", ok).is_ok(), "{ok}");
    }
    for bad in ["", "a b", "{$HOME}", "a}", "a\"b", "a\\b", "a`b", "line\nbreak", "tab\t"] {
        let err = check_caddy_token("sink.username", bad).unwrap_err().to_string();
        assert!(err.starts_with("sink.username: "), "{err}");
    }
}

#[test]
fn ini_values_refuse_what_grafana_would_expand() {
    for ok in ["admin", "a#b;c", "ünï", "100%", "$x", "a $ b", "/home/my dir/x"] {
        assert!(check_ini_value("f", ok).is_ok(), "{ok}");
    }
    for bad in ["", "${HOME}", "$__env{X}", "%(x)s", "a\"b", "a\nb", "ends\\"] {
        assert!(check_ini_value("sink.grafana.admin_user", bad).is_err(), "{bad}");
    }
}

#[test]
fn prometheus_durations() {
    assert_eq!(prometheus_duration(Duration::from_secs(5)), "5s");
    assert_eq!(prometheus_duration(Duration::from_millis(500)), "500ms");
    assert_eq!(prometheus_duration(Duration::from_secs(90)), "90s");
    assert_eq!(prometheus_duration(Duration::from_millis(1500)), "1500ms");
}
