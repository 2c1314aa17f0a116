//! Tests of loading, defaults, validation and the environment.

use std::path::Path;

use crate::{Config, ConfigError, Env, SecretVar, Settings};

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load_in(dir: &Path, yaml: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    if let Some(yaml) = yaml {
        std::fs::write(dir.join("greenflow.yaml"), yaml).unwrap();
    }
    Settings::load(None, dir, vars(env))
}

#[test]
fn no_file_means_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let settings = load_in(dir.path(), None, &[("HOME", "/home/r")]).unwrap();
    assert_eq!(settings.config, Config::default());
    assert_eq!(settings.config_file, None);
    assert_eq!(settings.paths.data_dir, Path::new("/home/r/.local/share/greenflow"));
    assert_eq!(settings.paths.state_dir, Path::new("/home/r/.local/state/greenflow"));
    assert_eq!(settings.config.sink.retention.as_flag_value(), "100y");
}

#[test]
fn without_a_project_file_the_user_then_the_system_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let user = crate::user_config_file(Some(dir.path().join("xdg").to_str().unwrap()), Some("/h")).unwrap();
    assert_eq!(user, dir.path().join("xdg/greenflow/greenflow.yaml"));
    assert_eq!(crate::user_config_file(None, Some("/h")).unwrap(), Path::new("/h/.config/greenflow/greenflow.yaml"));
    assert_eq!(crate::user_config_file(Some("relative"), None), None);
    let system = dir.path().join("etc/greenflow/greenflow.yaml");
    assert_eq!(crate::discover(&project, Some(&user), &system), None);
    std::fs::create_dir_all(system.parent().unwrap()).unwrap();
    std::fs::write(&system, "").unwrap();
    assert_eq!(crate::discover(&project, Some(&user), &system), Some(system.clone()));
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "").unwrap();
    assert_eq!(crate::discover(&project, Some(&user), &system), Some(user.clone()));
    std::fs::write(project.join("greenflow.yaml"), "").unwrap();
    assert_eq!(crate::discover(&project, Some(&user), &system), Some(project.join("greenflow.yaml")));
}

#[test]
fn the_user_config_is_loaded_from_xdg_config_home() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("xdg/greenflow/greenflow.yaml");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "sink:\n  http_port: 18080\n").unwrap();
    let cwd = dir.path().join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let xdg = dir.path().join("xdg");
    let settings =
        Settings::load(None, &cwd, vars(&[("HOME", "/h"), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())])).unwrap();
    assert_eq!(settings.config_file.as_deref(), Some(user.as_path()));
    assert_eq!(settings.config.sink.http_port, 18080);
}

#[test]
fn a_config_path_that_is_a_directory_is_an_error_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("greenflow.yaml")).unwrap();
    let err = Settings::load(None, dir.path(), vars(&[("HOME", "/h")])).unwrap_err().to_string();
    assert!(err.contains("greenflow.yaml"), "{err}");
}

#[test]
fn config_is_found_upward_and_relative_paths_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greenflow.yaml"), "paths:\n  data_dir: data\n").unwrap();
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    let settings = Settings::load(None, &nested, vars(&[("HOME", "/h")])).unwrap();
    assert_eq!(settings.config_file.as_deref(), Some(dir.path().join("greenflow.yaml").as_path()));
    assert_eq!(settings.paths.data_dir, dir.path().join("data"));
}

#[test]
fn xdg_variables_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        load_in(dir.path(), None, &[("HOME", "/h"), ("XDG_DATA_HOME", "/d"), ("XDG_STATE_HOME", "/s")]).unwrap();
    assert_eq!(settings.paths.data_dir, Path::new("/d/greenflow"));
    assert_eq!(settings.paths.state_dir, Path::new("/s/greenflow"));
}

#[test]
fn unknown_keys_suggest_the_nearest_valid_key() {
    let err = Config::from_yaml("sink:\n  retension: 10y\n").unwrap_err().to_string();
    assert_eq!(err, "unknown key `sink.retension`; did you mean `sink.retention`?");
    let err = Config::from_yaml("sink:\n  victoria_metrics:\n    prot: 1\n").unwrap_err().to_string();
    assert!(err.contains("did you mean `sink.victoria_metrics.port`"), "{err}");
    let err = Config::from_yaml("snk: {}\n").unwrap_err().to_string();
    assert!(err.contains("did you mean `sink`"), "{err}");
    let err = Config::from_yaml("zzzzzz: 1\n").unwrap_err().to_string();
    assert!(err.contains("unknown key `zzzzzz`") && err.contains("config show"), "{err}");
}

#[test]
fn bad_values_name_the_key_and_the_fix() {
    let err = Config::from_yaml("sink:\n  retention: 10x\n").unwrap_err().to_string();
    assert!(err.contains("sink.retention") && err.contains("`10x`") && err.contains("100y"), "{err}");
    let err = Config::from_yaml("sink:\n  retention: 5h\n").unwrap_err().to_string();
    assert!(err.contains("at least one day"), "{err}");
    let err = Config::from_yaml("sink:\n  http_port: lots\n").unwrap_err().to_string();
    assert!(err.contains("sink.http_port"), "{err}");
    let err = Config::from_yaml("local:\n  scrape_interval: soon\n").unwrap_err().to_string();
    assert!(err.contains("local.scrape_interval"), "{err}");
    let err = Config::from_yaml("sink:\n  http_port: 8428\n").unwrap_err().to_string();
    assert!(err.contains("sink.victoria_metrics.port") && err.contains("already used by sink.http_port"), "{err}");
    let err = Config::from_yaml("sink:\n  username: 'a:b'\n").unwrap_err().to_string();
    assert!(err.contains("sink.username") && err.contains("':'"), "{err}");
    let err = Config::from_yaml("sink:\n  public_host: 'laptop.ts.net/vm'\n").unwrap_err().to_string();
    assert!(err.contains("sink.public_host"), "{err}");
}

#[test]
fn retention_accepts_victoria_metrics_units() {
    for ok in ["100y", "1d", "24h", "2w", "12"] {
        assert!(Config::from_yaml(&format!("sink:\n  retention: '{ok}'\n")).is_ok(), "{ok}");
    }
    for bad in ["", "y", "1.5y", "-1y", "1m", "23h", "10 y"] {
        assert!(Config::from_yaml(&format!("sink:\n  retention: '{bad}'\n")).is_err(), "{bad}");
    }
}

#[test]
fn errors_in_a_file_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_in(dir.path(), Some("sink:\n  retention: 10x\n"), &[("HOME", "/h")]).unwrap_err().to_string();
    assert!(err.starts_with(&dir.path().join("greenflow.yaml").display().to_string()), "{err}");
}

#[test]
fn secrets_file_fills_only_unset_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".secrets.env"),
        "GREENFLOW_SINK_PASSWORD=from-file\nGRAFANA_ADMIN_PASSWORD=grafana-file\nTAILSCALE_AUTH_KEY=tskey-old\n",
    )
    .unwrap();
    let settings = load_in(dir.path(), Some(""), &[("HOME", "/h"), ("GREENFLOW_SINK_PASSWORD", "from-env")]).unwrap();
    assert_eq!(settings.env.secret(SecretVar::SinkPassword).unwrap().expose(), "from-env");
    assert_eq!(settings.env.secret(SecretVar::GrafanaAdminPassword).unwrap().expose(), "grafana-file");
    assert_eq!(settings.env.secret(SecretVar::TailscaleAuthKey).unwrap().expose(), "tskey-old");
    assert_eq!(format!("{:?}", settings.env.secret(SecretVar::SinkPassword)), "Some([redacted])");
}

#[test]
fn ts_authkey_is_preferred_over_the_old_name() {
    let env = Env::from_vars(vars(&[("TS_AUTHKEY", "new"), ("TAILSCALE_AUTH_KEY", "old")]));
    assert_eq!(env.secret(SecretVar::TailscaleAuthKey).unwrap().expose(), "new");
    let env = Env::from_vars(vars(&[("TS_AUTHKEY", ""), ("TAILSCALE_AUTH_KEY", "old")]));
    assert_eq!(env.secret(SecretVar::TailscaleAuthKey).unwrap().expose(), "old");
}

#[test]
fn original_variables_give_the_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        load_in(dir.path(), None, &[("HOME", "/h"), ("NODENAME", "laptop"), ("TAILSCALE_DOMAIN", "tail1234.ts.net")])
            .unwrap();
    let public = settings.public_address().unwrap().unwrap();
    assert_eq!(public.remote_write_url, "https://laptop.tail1234.ts.net/vm/api/v1/write");
    assert!(public.is_tailnet());

    let settings = load_in(
        dir.path(),
        None,
        &[
            ("HOME", "/h"),
            ("NODENAME", "laptop"),
            ("TAILSCALE_DOMAIN", "tail1234.ts.net"),
            ("EXPERIMENT_STORAGE_URL", "https://sink.example.org:8443/vm/api/v1/write"),
        ],
    )
    .unwrap();
    let public = settings.public_address().unwrap().unwrap();
    assert_eq!(public.remote_write_url, "https://sink.example.org:8443/vm/api/v1/write");
    assert_eq!(public.base_url(), "https://sink.example.org:8443");

    let err = load_in(dir.path(), None, &[("HOME", "/h"), ("EXPERIMENT_STORAGE_URL", "not a url")]).unwrap_err();
    assert!(err.to_string().contains("EXPERIMENT_STORAGE_URL"), "{err}");
}

#[test]
fn public_host_accepts_names_and_urls() {
    for (value, base) in [
        ("laptop.tail1234.ts.net", "https://laptop.tail1234.ts.net"),
        ("https://metrics.example.org", "https://metrics.example.org"),
        ("http://192.0.2.7:8080", "http://192.0.2.7:8080"),
    ] {
        let config = Config::from_yaml(&format!("sink:\n  public_host: '{value}'\n")).unwrap();
        let address = crate::PublicAddress::parse(config.sink.public_host.as_deref().unwrap(), "k").unwrap();
        assert_eq!(address.base_url(), base);
    }
    for bad in ["ftp://x.org", "https://user:pw@x.org", "bad_name.org", "x.org/path", "{x}.org"] {
        assert!(Config::from_yaml(&format!("sink:\n  public_host: '{bad}'\n")).is_err(), "{bad}");
    }
}

#[test]
fn the_init_template_documents_exactly_the_defaults() {
    let template = include_str!("../../../templates/init/greenflow.yaml");
    assert_eq!(Config::from_yaml(template).unwrap(), Config::default(), "as written (all commented)");
    // Uncomment every `# key: value` line: the result must parse to the defaults, so the file cannot drift.
    let uncommented: String = template
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            match trimmed.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(':')
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
                {
                    format!("{indent}{rest}")
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(Config::from_yaml(&uncommented).unwrap(), Config::default(), "uncommented:\n{uncommented}");
    // And it names every key the model has.
    let defaults = serde_yaml::to_value(Config::default()).unwrap();
    fn keys(value: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(map) = value.as_mapping() {
            for (k, v) in map {
                let k = k.as_str().unwrap();
                out.push(k.to_owned());
                keys(v, &format!("{prefix}{k}."), out);
            }
        }
    }
    let mut all = Vec::new();
    keys(&defaults, "", &mut all);
    for key in all {
        assert!(template.contains(&format!("{key}:")), "init template misses `{key}`");
    }
}

#[test]
fn secrets_are_checked_for_the_bytes_that_will_be_used() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value, fragment) in [
        ("GREENFLOW_SINK_PASSWORD", "", "unset it to have one generated"),
        ("GREENFLOW_SINK_PASSWORD", "hunter2\n", "control character"),
        ("GREENFLOW_SINK_PASSWORD", " hunter2", "leading or trailing blanks"),
        ("GREENFLOW_SINK_PASSWORD", "hunter2 ", "leading or trailing blanks"),
        ("GREENFLOW_SINK_PASSWORD", "hun\tter2", "control character"),
        ("GREENFLOW_SINK_PASSWORD", "hun\u{7f}ter2", "control character"),
        ("GRAFANA_ADMIN_PASSWORD", "", "unset it"),
        ("GRAFANA_ADMIN_PASSWORD", "hunter2\r\n", "control character"),
        ("GRAFANA_ADMIN_PASSWORD", "\u{a0}hunter2", "leading or trailing blanks"),
    ] {
        let err = load_in(dir.path(), None, &[("HOME", "/h"), (name, value)]).unwrap_err().to_string();
        assert!(err.starts_with(name) && err.contains(fragment), "{name}={value:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // Inner blanks are a password like any other.
    let settings = load_in(dir.path(), None, &[("HOME", "/h"), ("GREENFLOW_SINK_PASSWORD", "correct horse")]).unwrap();
    assert_eq!(settings.env.secret(SecretVar::SinkPassword).unwrap().expose(), "correct horse");
}

#[test]
fn a_bad_secret_from_the_secrets_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".secrets.env"), "GREENFLOW_SINK_PASSWORD='hunter2 '\n").unwrap();
    let err = load_in(dir.path(), Some(""), &[("HOME", "/h")]).unwrap_err().to_string();
    assert!(err.contains("GREENFLOW_SINK_PASSWORD") && err.contains(".secrets.env"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    std::fs::write(dir.path().join(".secrets.env"), "GREENFLOW_SINK_PASSWORD=\n").unwrap();
    let err = load_in(dir.path(), Some(""), &[("HOME", "/h")]).unwrap_err().to_string();
    assert!(err.contains("unset it"), "{err}");
}

#[test]
fn a_malformed_secrets_file_names_the_line_not_its_content() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line) in [
        ("GREENFLOW_SINK_PASSWORD=\"hunter2\n", 1),
        ("# comment\nA=1\n\nGREENFLOW_SINK_PASSWORD hunter2\nB=2\n", 4),
        ("A=1\nB='multi\nline'\nC=hunter2 'x\n", 4),
        ("A=1\nB=\"hunter2\nstill open\n", 2),
        ("A=1\nGREENFLOW_SINK_PASSWORD hunter2", 2),
    ] {
        std::fs::write(dir.path().join(".secrets.env"), text).unwrap();
        let err = load_in(dir.path(), Some(""), &[("HOME", "/h")]).unwrap_err().to_string();
        assert!(err.contains(&format!(".secrets.env` line {line} ")), "{text:?}: {err}");
        assert!(!err.contains("hunter2") && !err.contains('\n'), "{err}");
    }
}

#[test]
fn urls_with_user_info_are_refused_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "https://user:hunter2@sink.example.org/vm/api/v1/write",
        "https://hunter2@sink.example.org/vm/api/v1/write",
        "https:/user:hunter2@sink.example.org/vm/api/v1/write",
        "https://user:hunter2@bad_host/vm/api/v1/write",
        "https://user:hunter2@[::1/vm",
    ] {
        let err = load_in(dir.path(), None, &[("HOME", "/h"), ("EXPERIMENT_STORAGE_URL", url)]).unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with("EXPERIMENT_STORAGE_URL"), "{err}");
        assert!(!err.contains("hunter2") && err.contains("[redacted]"), "{url}: {err}");
    }
    for host in ["user:hunter2@laptop.ts.net", "https://user:hunter2@laptop.ts.net", "https://hunter2@x.org/p?q"] {
        let err = Config::from_yaml(&format!("sink:\n  public_host: '{host}'\n")).unwrap_err().to_string();
        assert!(err.contains("not in the URL") && !err.contains("hunter2"), "{host}: {err}");
        assert!(err.contains("[redacted]@"), "{err}");
    }
    assert_eq!(crate::model::redact_url("https://a:b@host/x?y=1@2"), "https://[redacted]@host/x?y=1@2");
    assert_eq!(crate::model::redact_url("https://host/x"), "https://host/x");
}

#[test]
fn public_urls_without_port_zero_query_or_fragment() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "https://sink.example.org:0/vm/api/v1/write",
        "https://sink.example.org/vm/api/v1/write?x=1",
        "https://sink.example.org/vm/api/v1/write#frag",
    ] {
        let err = load_in(dir.path(), None, &[("HOME", "/h"), ("EXPERIMENT_STORAGE_URL", url)]).unwrap_err();
        assert!(err.to_string().starts_with("EXPERIMENT_STORAGE_URL"), "{url}: {err}");
    }
    for host in ["laptop.ts.net:0", "https://x.org?q=1", "https://x.org#f", "https://x.org/?q"] {
        let err = Config::from_yaml(&format!("sink:\n  public_host: '{host}'\n")).unwrap_err().to_string();
        assert!(err.starts_with("sink.public_host"), "{host}: {err}");
    }
}

#[test]
fn remote_write_settings_that_would_stall_the_queue_are_refused() {
    for (yaml, key) in [
        ("max_shards: 0", "remote_write.max_shards"),
        ("capacity: 0", "remote_write.capacity"),
        ("max_samples_per_send: 0", "remote_write.max_samples_per_send"),
        ("batch_send_deadline: 0s", "remote_write.batch_send_deadline"),
        ("min_backoff: 0s", "remote_write.min_backoff"),
        ("min_backoff: 20s", "remote_write.min_backoff"),
        ("min_backoff: 2s\n  max_backoff: 1s", "remote_write.min_backoff"),
        ("max_backoff: 1000y", "remote_write.max_backoff"),
    ] {
        let err = Config::from_yaml(&format!("remote_write:\n  {yaml}\n")).unwrap_err().to_string();
        assert!(err.starts_with(key), "{yaml}: {err}");
    }
    assert!(Config::from_yaml("remote_write:\n  min_backoff: 1s\n  max_backoff: 1s\n").is_ok());
}

#[test]
fn retention_is_at_most_a_hundred_years_and_never_overflows() {
    for ok in ["100y", "5200w", "36500d", "876000h", "1176"] {
        assert!(Config::from_yaml(&format!("sink:\n  retention: '{ok}'\n")).is_ok(), "{ok}");
    }
    for bad in ["101y", "36501d", "1200", "99999999999y", "99999999999999999999999999y", "18446744073709551615h"] {
        let err = Config::from_yaml(&format!("sink:\n  retention: '{bad}'\n")).unwrap_err().to_string();
        assert!(err.contains("at most 100y"), "{bad}: {err}");
    }
}

#[test]
fn durations_beyond_a_hundred_years_are_refused() {
    for yaml in
        ["run:\n  drain_timeout: 200y\n", "local:\n  scrape_interval: 500y\n", "cluster:\n  scrape_interval: 0s\n"]
    {
        assert!(Config::from_yaml(yaml).is_err(), "{yaml}");
    }
}

#[test]
fn the_stand_in_cluster_ports_may_not_take_a_sink_port() {
    let err = Config::from_yaml("local:\n  prometheus_port: 8428\n").unwrap_err().to_string();
    assert!(err.starts_with("local.prometheus_port") && err.contains("sink.victoria_metrics.port"), "{err}");
    let err = Config::from_yaml("local:\n  node_exporter_port: 3000\n").unwrap_err().to_string();
    assert!(err.starts_with("local.node_exporter_port") && err.contains("sink.grafana.port"), "{err}");
    let err = Config::from_yaml("local:\n  prometheus_port: 9100\n  node_exporter_port: 9100\n").unwrap_err();
    assert!(err.to_string().contains("already used by local.prometheus_port"), "{err}");
    assert!(Config::from_yaml("local:\n  prometheus_port: 9090\n  node_exporter_port: 9100\n").is_ok());
    assert!(Config::from_yaml("local:\n  prometheus_port: 0\n  node_exporter_port: 0\n").is_ok());
}

#[test]
fn extra_args_may_not_override_the_flags_greenflow_owns() {
    for (arg, flag) in [
        ("-httpListenAddr=0.0.0.0:8428", "-httpListenAddr"),
        ("--storageDataPath=/tmp", "-storageDataPath"),
        ("-retentionPeriod", "-retentionPeriod"),
        ("-search.latencyOffset=0s", "-search.latencyOffset"),
        ("-envflag.enable", "-envflag.enable"),
        ("-envflag.prefix=VM_", "-envflag.prefix"),
        ("-forceMergeAuthKey=hunter2", "-forceMergeAuthKey"),
        ("-httpAuth.password=hunter2", "-httpAuth.password"),
    ] {
        let err = Config::from_yaml(&format!("sink:\n  victoria_metrics:\n    extra_args: ['{arg}']\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sink.victoria_metrics.extra_args") && err.contains(&format!("`{flag}`")), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let ok =
        "sink:\n  victoria_metrics:\n    extra_args: ['-search.maxQueryDuration=60s', '-dedup.minScrapeInterval=1s']\n";
    assert!(Config::from_yaml(ok).is_ok());
}

#[test]
fn an_error_in_a_file_has_no_source_that_repeats_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_in(dir.path(), Some("sink:\n  retention: 10x\n"), &[("HOME", "/h")]).unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.to_string().matches("sink.retention").count(), 1, "{err}");
}

mod never_panics {
    use proptest::prelude::*;

    use crate::{Config, Settings};

    /// Keys of the model and a few that are not, to build YAML that gets past the first parse.
    const KEYS: &[&str] = &[
        "sink",
        "retention",
        "public_host",
        "http_port",
        "username",
        "victoria_metrics",
        "port",
        "extra_args",
        "search_latency_offset",
        "remote_write",
        "capacity",
        "max_shards",
        "min_backoff",
        "max_backoff",
        "batch_send_deadline",
        "local",
        "prometheus_port",
        "node_exporter_port",
        "scrape_interval",
        "run",
        "drain_timeout",
        "cluster",
        "namespace",
        "chart_version",
        "extra_values",
        "paths",
        "data_dir",
        "grafana",
        "admin_user",
        "caddy",
        "admin_port",
        "bogus",
    ];
    const VALUES: &[&str] = &[
        "0",
        "-1",
        "65536",
        "99999999999999999999999",
        "100y",
        "99999999999y",
        "0s",
        "-5s",
        "1e400",
        "~",
        "null",
        "[]",
        "{}",
        "''",
        "\"\\u0000\"",
        "'https://u:p@h:0/?q#f'",
        "'-httpAuth.password=x'",
        "yes",
        "1.5",
        ".inf",
        "&a x",
        "*a",
        "!!binary aGk=",
        "18446744073709551616h",
        "'\t'",
    ];

    fn yamlish() -> impl Strategy<Value = String> {
        let line = (0..3usize, prop::sample::select(KEYS), prop::sample::select(VALUES), any::<bool>()).prop_map(
            |(indent, key, value, nested)| {
                if nested {
                    format!("{}{key}:", "  ".repeat(indent))
                } else {
                    format!("{}{key}: {value}", "  ".repeat(indent))
                }
            },
        );
        // `section:` then `key: value` pairs under it: shapes that get past the parse and reach the validation.
        let section = (
            prop::sample::select(&["sink", "remote_write", "local", "run", "cluster", "paths"][..]),
            prop::collection::vec((prop::sample::select(KEYS), prop::sample::select(VALUES)), 1..4),
        )
            .prop_map(|(section, pairs)| {
                let body: String = pairs.iter().map(|(key, value)| format!("  {key}: {value}\n")).collect();
                format!("{section}:\n{body}")
            });
        prop_oneof![
            prop::collection::vec(section, 1..3).prop_map(|sections| sections.concat()),
            prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n")),
            proptest::string::string_regex(r"[a-z_:\-\[\]{}'\x22#&*!|>%@`\n\t 0-9.~]{0,80}").unwrap(),
            any::<String>(),
        ]
    }

    fn env_value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(VALUES).prop_map(str::to_owned),
            proptest::string::string_regex(r"[ -~\t\n\r\x00]{0,40}").unwrap(),
            any::<String>().prop_map(|s| s.replace('\0', "")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn from_yaml_returns_ok_or_err(text in yamlish()) {
            let _ = Config::from_yaml(&text);
        }

        #[test]
        fn settings_load_returns_ok_or_err(
            text in yamlish(),
            secrets in yamlish(),
            password in env_value(),
            url in env_value(),
            node in env_value(),
            home in env_value(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("greenflow.yaml"), &text).unwrap();
            std::fs::write(dir.path().join(".secrets.env"), &secrets).unwrap();
            let env = [
                ("HOME", home),
                ("GREENFLOW_SINK_PASSWORD", password.clone()),
                ("GRAFANA_ADMIN_PASSWORD", password),
                ("EXPERIMENT_STORAGE_URL", url),
                ("NODENAME", node),
                ("TAILSCALE_DOMAIN", "tail1234.ts.net".to_owned()),
            ];
            let _ = Settings::load(None, dir.path(), env.map(|(k, v)| (k.to_owned(), v)));
        }
    }
}

#[test]
fn a_variable_greenflow_reads_must_be_utf8_and_others_are_left_out() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let bad = || OsString::from_vec(b"hunter2\xff".to_vec());
    let vars = crate::utf8_vars([(OsString::from("OTHER"), bad()), (OsString::from("HOME"), OsString::from("/h"))]);
    assert_eq!(vars.unwrap(), vec![("HOME".to_owned(), "/h".to_owned())]);
    for name in ["GREENFLOW_SINK_PASSWORD", "TS_AUTHKEY", "XDG_DATA_HOME", "EXPERIMENT_STORAGE_URL"] {
        let err = crate::utf8_vars([(OsString::from(name), bad())]).unwrap_err().to_string();
        assert!(err.starts_with(name) && err.contains("UTF-8") && !err.contains("hunter2"), "{err}");
    }
}

#[test]
fn report_settings_are_checked_where_they_are_written() {
    let problem = |yaml: &str| Config::from_yaml(yaml).unwrap_err().to_string();
    let err = problem("report:\n  queries:\n    - name: lag\n      query: kafka_lag\n");
    assert!(err.contains("report.queries[0].query") && err.contains("greenflow_run=\"$run\""), "{err}");
    let err = problem(
        "report:\n  queries:\n    - {name: a, query: 'x{greenflow_run=\"$run\"}'}\n    - {name: a, query: 'y{greenflow_run=\"$run\"}'}\n",
    );
    assert!(err.contains("report.queries[1].name") && err.contains("another query has this name"), "{err}");
    let err = problem("report:\n  queries:\n    - {name: a, query: 'x{greenflow_run=\"$run\"}', aggregation: p90}\n");
    assert!(err.contains("p90") && err.contains("p95"), "the aggregations are listed: {err}");
    let err = problem("report:\n  idle:\n    watts: 40\n    run: abc\n");
    assert!(err.contains("report.idle") && err.contains("give one of"), "{err}");
    let err = problem("report:\n  idle:\n    watts: -3\n");
    assert!(err.contains("report.idle.watts"), "{err}");
    let err = problem("report:\n  work:\n    query: messages_total\n");
    assert!(err.contains("report.work.query"), "{err}");
    let err = problem("local:\n  scrape_targets: [\"http://127.0.0.1:9308/metrics\"]\n");
    assert!(err.contains("local.scrape_targets[0]") && err.contains("no scheme"), "{err}");

    let config = Config::from_yaml(
        "local:\n  scrape_targets: ['127.0.0.1:9308', 'kafka-exporter:9308']\nreport:\n  work:\n    query: 'm{greenflow_run=\"$run\"}'\n  idle:\n    run: 20261202T0850\n",
    )
    .unwrap();
    assert_eq!(config.report.work.unwrap().unit, "unit", "the default unit");
    assert_eq!(config.report.idle.unwrap().run.as_deref(), Some("20261202T0850"));
}
