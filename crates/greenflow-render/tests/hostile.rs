//! Property tests: for hostile strings (quotes, braces, newlines, `$`, `#`, unicode) in every configurable text
//! field, each renderer either refuses the value with an error naming the field, or renders a file that the real
//! consumer reads back to exactly that value. The Caddyfile is read by the real `caddy adapt`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use greenflow_render::*;
use proptest::prelude::*;

/// Strings rich in what breaks configuration formats.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::string::string_regex(r#"[a-zA-Z0-9 "'{}\\`$#;:%()\[\]\n\t@.ü€😀\-]{0,16}"#).unwrap(),
        1 => any::<String>(),
        1 => Just("{$HOME}".to_owned()),
        1 => Just("a\"\nimport evil".to_owned()),
        1 => Just("ünïcødé-ūser.name@lab".to_owned()),
    ]
}

fn caddy_adapt(caddyfile: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let output = Command::new("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("caddy must be installed for this test (Debian package `caddy`)");
    assert!(output.status.success(), "caddy adapt failed:\n{}\n{caddyfile}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn base_caddy() -> CaddyfileInput {
    CaddyfileInput {
        admin_listen: "unix//state/greenflow/sink/caddy/admin/admin.sock".into(),
        loopback_port: 8080,
        public_site: None,
        public_bind: Vec::new(),
        username: "greenflow".into(),
        password_hash: "$2b$04$abcdefghijklmnopqrstuuMmfDSn8SSv.1Z5v4r2sWIPOrNGxBZ1y".into(),
        writer_username: "greenflow-writer".into(),
        writer_password_hash: "$2b$04$zyxwvutsrqponmlkjihgfeMmfDSn8SSv.1Z5v4r2sWIPOrNGxBZ1y".into(),
        reader_username: "greenflow-reader".into(),
        reader_password_hash: "$2b$04$readerreaderreaderreaOMmfDSn8SSv.1Z5v4r2sWIPOrNGxBZ1y".into(),
        victoria_metrics: "127.0.0.1:8428".into(),
        grafana: Some("127.0.0.1:3000".into()),
        auth_directive: AuthDirective::Basicauth,
        public_aliases: Vec::new(),
        funnel_port: None,
    }
}

/// Every value of `key` anywhere in `value`, in document order.
fn find_all<'a>(value: &'a serde_json::Value, key: &str, out: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.push(v);
                } else {
                    find_all(v, key, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| find_all(v, key, out)),
        _ => {}
    }
}

/// The user names of each basic-auth block: the write route's (writer and owner) and the owner-only route's.
fn account_sets(json: &serde_json::Value) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    find_all(json, "accounts", &mut found);
    found
        .into_iter()
        .map(|a| a.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_owned()).collect())
        .collect()
}

#[test]
fn a_typical_unicode_user_name_is_accepted_and_exact() {
    let input = CaddyfileInput { username: "ünïcødé-ūser.name@lab".into(), ..base_caddy() };
    let json = caddy_adapt(&render_caddyfile(&input).unwrap());
    let mut sets = account_sets(&json);
    sets.sort();
    assert_eq!(
        sets,
        vec![
            vec!["greenflow-reader".to_owned(), "ünïcødé-ūser.name@lab".to_owned()],
            vec!["greenflow-writer".to_owned(), "ünïcødé-ūser.name@lab".to_owned()],
            vec!["ünïcødé-ūser.name@lab".to_owned()],
        ]
    );
}

#[test]
fn a_tailnet_site_listens_on_the_tailnet_addresses_only() {
    let input = CaddyfileInput {
        public_site: Some("https://laptop.tail1234.ts.net".into()),
        public_bind: vec!["100.101.102.103".parse().unwrap(), "fd7a:115c:a1e0::1234:5678".parse().unwrap()],
        ..base_caddy()
    };
    let json = caddy_adapt(&render_caddyfile(&input).unwrap());
    let mut listens: Vec<Vec<String>> = json["apps"]["http"]["servers"]
        .as_object()
        .unwrap()
        .values()
        .map(|server| server["listen"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect())
        .collect();
    listens.sort();
    assert_eq!(
        listens,
        vec![
            vec!["100.101.102.103:443".to_owned(), "[fd7a:115c:a1e0::1234:5678]:443".to_owned()],
            vec!["127.0.0.1:8080".to_owned()],
        ],
        "{json}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn caddyfile_user_names_are_exact_or_refused(username in hostile()) {
        let input = CaddyfileInput { username: username.clone(), ..base_caddy() };
        match render_caddyfile(&input) {
            Err(err) => prop_assert!(err.to_string().starts_with("sink.username: "), "{err}"),
            Ok(text) => {
                let json = caddy_adapt(&text);
                let sets = account_sets(&json);
                prop_assert_eq!(sets.len(), 3, "the write route, the read route and the owner's");
                prop_assert!(sets.iter().all(|set| set.contains(&username)), "{:?}", sets);
                prop_assert!(sets.iter().any(|set| set == std::slice::from_ref(&username)), "{:?}", sets);
                // Nothing else moved: the same routes as for a plain name.
                let plain = caddy_adapt(&render_caddyfile(&base_caddy()).unwrap());
                let quoted = serde_json::to_string(&username).unwrap();
                let strip = |v: &serde_json::Value| v.to_string().replace(&quoted, "\"U\"").replace("\"greenflow\"", "\"U\"");
                // A name whose JSON form is also a fragment of the plain config (`":"`) cannot be swapped out by
                // text: the account checks above cover it.
                if !plain.to_string().contains(&quoted) {
                    prop_assert_eq!(strip(&json), strip(&plain));
                }
            }
        }
    }
}

/// Reads `key = value` lines the way Grafana's ini reader (go-ini) does for the forms greenflow writes: raw
/// triple-quoted values, or bare values cut at the first `#` or `;`.
fn read_ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once(['=', ':']).expect("key = value");
        let value = value.trim();
        let value = match value.strip_prefix("\"\"\"") {
            Some(rest) => rest.split_once("\"\"\"").expect("closing quotes").0.to_owned(),
            None => value.split(['#', ';']).next().unwrap().trim().to_owned(),
        };
        out.push((section.clone(), key.trim().to_owned(), value));
    }
    out
}

fn base_grafana() -> GrafanaInput {
    GrafanaInput {
        port: 3000,
        domain: "127.0.0.1".into(),
        root_url: "http://127.0.0.1:8080/grafana/".into(),
        data_dir: PathBuf::from("/data/grafana"),
        logs_dir: PathBuf::from("/state/logs"),
        provisioning_dir: PathBuf::from("/state/provisioning"),
        dashboards_dir: PathBuf::from("/state/dashboards"),
        admin_user: "admin".into(),
        admin_password_file: PathBuf::from("/data/secrets/admin"),
        secret_key_file: PathBuf::from("/data/secrets/key"),
        datasource_url: "http://127.0.0.1:8080/vm".into(),
        datasource_user: "greenflow-reader".into(),
        datasource_password_file: PathBuf::from("/data/secrets/sink-reader-password"),
        scrape_interval: Duration::from_secs(5),
    }
}

fn ini_get(entries: &[(String, String, String)], section: &str, key: &str) -> String {
    entries.iter().find(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.clone()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn grafana_ini_values_are_exact_or_refused(admin in hostile(), dir in hostile()) {
        let data_dir = PathBuf::from(format!("/data/{dir}"));
        let input = GrafanaInput { admin_user: admin.clone(), data_dir: data_dir.clone(), ..base_grafana() };
        let plain_lines = read_ini(&render_grafana(&base_grafana()).unwrap().ini).len();
        match render_grafana(&input) {
            Err(err) => {
                let text = err.to_string();
                prop_assert!(text.starts_with("sink.grafana.admin_user: ") || text.starts_with("paths.data_dir: "), "{text}");
            }
            Ok(files) => {
                let entries = read_ini(&files.ini);
                prop_assert_eq!(entries.len(), plain_lines, "no line was injected");
                prop_assert_eq!(ini_get(&entries, "security", "admin_user"), admin);
                prop_assert_eq!(ini_get(&entries, "paths", "data"), data_dir.to_str().unwrap());
            }
        }
    }

    #[test]
    fn grafana_provisioning_values_are_exact(url in hostile(), dir in hostile(), user in hostile(), secrets in hostile()) {
        let dashboards_dir = PathBuf::from(format!("/state/{dir}"));
        let password_file = PathBuf::from(format!("/data/{secrets}/reader"));
        let input = GrafanaInput {
            datasource_url: url.clone(),
            datasource_user: user.clone(),
            datasource_password_file: password_file.clone(),
            dashboards_dir: dashboards_dir.clone(),
            ..base_grafana()
        };
        let files = match render_grafana(&input) {
            Err(err) => {
                // Only a password file path Grafana's $__file{} cannot carry is refused.
                prop_assert!(err.to_string().starts_with("paths.data_dir: "), "{err}");
                prop_assert!(secrets.contains(['}', '$']) || secrets.chars().any(char::is_control), "{err}");
                return Ok(());
            }
            Ok(files) => files,
        };
        // Grafana expands `$VAR` in provisioning files and reads `$$` as `$`.
        let unescape = |v: &serde_yaml::Value| v.as_str().unwrap().replace("$$", "$");
        let doc: serde_yaml::Value = serde_yaml::from_str(&files.datasources).unwrap();
        prop_assert_eq!(unescape(&doc["datasources"][0]["url"]), url);
        prop_assert_eq!(doc["datasources"][0]["uid"].as_str(), Some(DATASOURCE_UID));
        prop_assert_eq!(unescape(&doc["datasources"][0]["basicAuthUser"]), user);
        prop_assert_eq!(
            doc["datasources"][0]["secureJsonData"]["basicAuthPassword"].as_str().unwrap(),
            format!("$__file{{{}}}", password_file.display())
        );
        let doc: serde_yaml::Value = serde_yaml::from_str(&files.dashboards).unwrap();
        prop_assert_eq!(unescape(&doc["providers"][0]["options"]["path"]), dashboards_dir.to_str().unwrap());
    }

    #[test]
    fn agent_config_values_round_trip(
        experiment in hostile(), username in hostile(), password_file in hostile(), url in hostile(), job in hostile()
    ) {
        let input = AgentConfigInput {
            scrape_interval: Duration::from_secs(5),
            external_labels: vec![("greenflow_experiment".into(), experiment.clone()), ("greenflow_run".into(), "r".into())],
            scrape_jobs: vec![ScrapeJob { name: job.clone(), target: "127.0.0.1:9100".into() }],
            remote_write: vec![RemoteWriteTarget { name: "sink".into(), url: url.clone(), username: username.clone(), password_file: password_file.clone(), proxy_url: None }],
            queue: QueueConfig {
                capacity: 1, max_samples_per_send: 1, batch_send_deadline: Duration::from_secs(1), max_shards: 1,
                min_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(1),
            },
        };
        let text = render_agent_config(&input).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        prop_assert_eq!(doc["global"]["external_labels"]["greenflow_experiment"].as_str(), Some(experiment.as_str()));
        prop_assert_eq!(doc["global"]["external_labels"].as_mapping().unwrap().len(), 2);
        prop_assert_eq!(doc["scrape_configs"][0]["job_name"].as_str(), Some(job.as_str()));
        let rw = &doc["remote_write"][0];
        prop_assert_eq!(rw["url"].as_str(), Some(url.as_str()));
        prop_assert_eq!(rw["basic_auth"]["username"].as_str(), Some(username.as_str()));
        prop_assert_eq!(rw["basic_auth"]["password_file"].as_str(), Some(password_file.as_str()));
        prop_assert_eq!(doc["remote_write"].as_sequence().unwrap().len(), 1);
    }
}
