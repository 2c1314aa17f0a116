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
