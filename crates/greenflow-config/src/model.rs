//! The typed shape of `greenflow.yaml`. Every field has a default, so an empty file (or none) is valid.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::suggest;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The local metrics sink: VictoriaMetrics, Caddy and Grafana on this machine.
    pub sink: SinkConfig,
    /// How Prometheus sends samples to the sink (shared by the cluster's Helm values and the local stand-in).
    pub remote_write: RemoteWriteConfig,
    /// The stand-in cluster on this machine (`greenflow demo`, the `local` run back-end).
    pub local: LocalClusterConfig,
    /// The cluster side: the kube-prometheus-stack release and its values.
    pub cluster: ClusterConfig,
    /// How `greenflow run` waits: scale-up, first sample, drain.
    pub run: RunConfig,
    /// Where data and state live.
    pub paths: PathsConfig,
}

impl Config {
    /// Parses and validates a configuration file. Unknown keys are errors that suggest the nearest valid key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_yaml(&text).map_err(|err| err.in_file(path))
    }

    /// Parses and validates configuration text (see [`Config::from_file`]).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let mut unknown = Vec::new();
        let parsed: Result<Self, _> = serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()));
        // An unknown key is the likelier mistake when both happen, and its message is the more useful one.
        if let Some(key) = unknown.into_iter().next() {
            return Err(suggest::unknown_key(&key));
        }
        let config = parsed.map_err(|source| ConfigError::Invalid { message: source.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the relations between fields that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sink = &self.sink;
        let ports = [
            ("sink.http_port", sink.http_port),
            ("sink.victoria_metrics.port", sink.victoria_metrics.port),
            ("sink.caddy.admin_port", sink.caddy.admin_port),
            ("sink.grafana.port", sink.grafana.port),
        ];
        for (i, (key, port)) in ports.iter().enumerate() {
            if *port == 0 {
                return Err(ConfigError::value(key, "0", "use a port between 1 and 65535"));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(ConfigError::value(
                    key,
                    &port.to_string(),
                    &format!("it is already used by {other}; give each sink component its own port"),
                ));
            }
        }
        sink.retention.validate()?;
        validate_plain_text("sink.username", &sink.username)?;
        if sink.username.contains(':') {
            return Err(ConfigError::value(
                "sink.username",
                &sink.username,
                "HTTP basic auth user names cannot contain ':'; choose a name without it",
            ));
        }
        validate_plain_text("sink.grafana.admin_user", &sink.grafana.admin_user)?;
        if let Some(host) = &sink.public_host {
            PublicAddress::parse(host, "sink.public_host")?;
        }
        if self.local.scrape_interval < Duration::from_secs(1) {
            return Err(ConfigError::value(
                "local.scrape_interval",
                &humantime::format_duration(self.local.scrape_interval).to_string(),
                "use at least 1s",
            ));
        }
        self.cluster.validate()?;
        self.run.validate()?;
        if self.remote_write.max_samples_per_send == 0 || self.remote_write.capacity == 0 {
            return Err(ConfigError::value(
                "remote_write.max_samples_per_send",
                &self.remote_write.max_samples_per_send.to_string(),
                "capacity and max_samples_per_send must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Rejects what no user name can sensibly hold: emptiness, surrounding blanks and control characters.
fn validate_plain_text(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::value(key, value, "it must not be empty"));
    }
    if value.trim() != value {
        return Err(ConfigError::value(key, value, "remove the leading or trailing blanks"));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::value(key, value, "remove control characters such as newlines and tabs"));
    }
    Ok(())
}

/// The sink on the researcher's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// User name for remote write and queries through Caddy (`/vm/`). The password comes from
    /// `GREENFLOW_SINK_PASSWORD` or is generated on first start.
    pub username: String,
    /// How long VictoriaMetrics keeps samples: a number with `h`, `d`, `w` or `y` (a bare number means months).
    pub retention: Retention,
    /// The name (e.g. `laptop.tail1234.ts.net`) or https URL the cluster uses to reach this machine. Empty: only the
    /// loopback site is served. `NODENAME` + `TAILSCALE_DOMAIN` fill it when unset.
    pub public_host: Option<String>,
    /// Loopback port of Caddy's plain-HTTP site (`http://127.0.0.1:<port>/vm/`, `/grafana/`).
    pub http_port: u16,
    /// VictoriaMetrics settings.
    pub victoria_metrics: VictoriaMetricsConfig,
    /// Caddy settings.
    pub caddy: CaddyConfig,
    /// Grafana settings.
    pub grafana: GrafanaConfig,
}

impl SinkConfig {
    /// The writer's user name, `<username>-writer`: the credential for remote write only, which the cluster and the
    /// stand-in cluster hold (the owner, `username`, may also query, export and import).
    pub fn writer_username(&self) -> String {
        format!("{}-writer", self.username)
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            username: "greenflow".into(),
            retention: Retention::default(),
            public_host: None,
            http_port: 8080,
            victoria_metrics: VictoriaMetricsConfig::default(),
            caddy: CaddyConfig::default(),
            grafana: GrafanaConfig::default(),
        }
    }
}

/// VictoriaMetrics (storage). It listens on 127.0.0.1 only; Caddy is the door.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VictoriaMetricsConfig {
    /// Loopback port of the HTTP API.
    pub port: u16,
    /// Path to the binary; empty: `victoria-metrics` or `victoriametrics` on PATH.
    pub binary: Option<PathBuf>,
    /// How long after ingestion a sample shows up in range queries (`-search.latencyOffset`).
    #[serde(with = "humantime_serde")]
    pub search_latency_offset: Duration,
    /// Extra command-line flags, passed as they are.
    pub extra_args: Vec<String>,
}

impl Default for VictoriaMetricsConfig {
    fn default() -> Self {
        Self { port: 8428, binary: None, search_latency_offset: Duration::from_secs(2), extra_args: Vec::new() }
    }
}

/// Caddy (reverse proxy, basic auth, TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaddyConfig {
    /// Loopback port of Caddy's admin API.
    pub admin_port: u16,
    /// Path to the binary; empty: `caddy` on PATH.
    pub binary: Option<PathBuf>,
}

impl Default for CaddyConfig {
    fn default() -> Self {
        Self { admin_port: 2019, binary: None }
    }
}

/// Grafana (views). Optional: when its binary is missing the sink runs without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrafanaConfig {
    /// Whether to run Grafana when its binary is found.
    pub enabled: bool,
    /// Loopback port of Grafana.
    pub port: u16,
    /// Path to the binary (`grafana`, or the older `grafana-server`); empty: looked up on PATH.
    pub binary: Option<PathBuf>,
    /// Grafana's home (holding `conf/defaults.ini` and `public/`); empty: guessed from the binary's location.
    pub homepath: Option<PathBuf>,
    /// The admin user. The password comes from `GRAFANA_ADMIN_PASSWORD` or is generated on first start.
    pub admin_user: String,
}

impl Default for GrafanaConfig {
    fn default() -> Self {
        Self { enabled: true, port: 3000, binary: None, homepath: None, admin_user: "admin".into() }
    }
}

/// Remote-write queue settings. Large batches keep the proxy's per-request cost low.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteWriteConfig {
    /// Samples buffered per shard.
    pub capacity: u32,
    /// Samples per request.
    pub max_samples_per_send: u32,
    /// Longest wait before a partial batch is sent.
    #[serde(with = "humantime_serde")]
    pub batch_send_deadline: Duration,
    /// Most parallel senders.
    pub max_shards: u32,
    /// First retry delay after a failed send.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            capacity: 20_000,
            max_samples_per_send: 10_000,
            batch_send_deadline: Duration::from_secs(5),
            max_shards: 10,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// How long `greenflow run` waits at each step before it gives up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// Prometheus scaled up and ready (pulling images on a fresh cluster takes a while).
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// The first sample of the run visible in the sink.
    #[serde(with = "humantime_serde")]
    pub first_sample_timeout: Duration,
    /// Every sample of the run in the sink after it ends (the sink may be down for a while). On timeout the cluster's
    /// Prometheus is left running with its queue, and `greenflow runs recover` finishes the drain later.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(300),
            first_sample_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(1800),
        }
    }
}

impl RunConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("run.ready_timeout", self.ready_timeout),
            ("run.first_sample_timeout", self.first_sample_timeout),
            ("run.drain_timeout", self.drain_timeout),
        ] {
            if value < Duration::from_secs(1) {
                return Err(ConfigError::value(
                    key,
                    &humantime::format_duration(value).to_string(),
                    "use at least 1s, e.g. 5m",
                ));
            }
        }
        Ok(())
    }
}

/// The stand-in cluster that runs on this machine: node-exporter and a Prometheus in agent mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalClusterConfig {
    /// How often the stand-in scrapes.
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// Path to the Prometheus binary; empty: `prometheus` on PATH.
    pub prometheus_binary: Option<PathBuf>,
    /// Path to node-exporter; empty: `prometheus-node-exporter` or `node_exporter` on PATH.
    pub node_exporter_binary: Option<PathBuf>,
    /// Loopback port of the Prometheus agent; 0 picks a free port at start.
    pub prometheus_port: u16,
    /// Loopback port of node-exporter; 0 picks a free port at start.
    pub node_exporter_port: u16,
}

impl Default for LocalClusterConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Duration::from_secs(5),
            prometheus_binary: None,
            node_exporter_binary: None,
            prometheus_port: 0,
            node_exporter_port: 0,
        }
    }
}

/// The cluster side: where the chart goes and what its values say beyond the sink's address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// Kubernetes namespace of the release (and of the remote-write Secret).
    pub namespace: String,
    /// Helm release name.
    pub release: String,
    /// The kube-prometheus-stack chart version to install.
    pub chart_version: String,
    /// Value of the `greenflow_deployment` label on every sample (e.g. the site: `g5k-nancy`).
    pub deployment: String,
    /// Scrape interval of Prometheus and node-exporter in the cluster.
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// Node selector for the Prometheus pod.
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Scrape Scaphandre's power metrics with a ServiceMonitor.
    pub scaphandre: bool,
    /// TLS server name for the remote-write connection, when the URL's host is not the certificate's.
    pub tls_server_name: Option<String>,
    /// Name of the Secret holding the remote-write user name and password.
    pub remote_write_secret: String,
    /// Chart values merged over greenflow's, last.
    pub extra_values: serde_yaml::Value,
    /// The kubeconfig context to use; empty: the current context (`KUBECONFIG` or `~/.kube/config`).
    pub context: Option<String>,
    /// Path to the helm binary; empty: `helm` on PATH.
    pub helm_binary: Option<PathBuf>,
    /// Name of the `coordination.k8s.io` Lease that is the experiment lock (one run at a time per cluster).
    pub lease_name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            namespace: "monitoring".into(),
            release: "greenflow".into(),
            chart_version: "88.5.3".into(),
            deployment: "default".into(),
            scrape_interval: Duration::from_secs(5),
            node_selector: Default::default(),
            scaphandre: false,
            tls_server_name: None,
            remote_write_secret: "greenflow-remote-write".into(),
            extra_values: serde_yaml::Value::Null,
            context: None,
            helm_binary: None,
            lease_name: "greenflow-experiment".into(),
        }
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("cluster.namespace", &self.namespace),
            ("cluster.release", &self.release),
            ("cluster.remote_write_secret", &self.remote_write_secret),
            ("cluster.lease_name", &self.lease_name),
        ] {
            let ok = !value.is_empty()
                && value.len() <= 53
                && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !value.starts_with('-')
                && !value.ends_with('-');
            if !ok {
                return Err(ConfigError::value(
                    key,
                    value,
                    "Kubernetes names are lower-case letters, digits and '-' (at most 53), e.g. monitoring",
                ));
            }
        }
        let mut parts = self.chart_version.split('.');
        let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !(numeric(parts.next()) && numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()) {
            return Err(ConfigError::value(
                "cluster.chart_version",
                &self.chart_version,
                "give a chart version such as 88.5.3",
            ));
        }
        validate_plain_text("cluster.deployment", &self.deployment)?;
        if let Some(context) = &self.context {
            validate_plain_text("cluster.context", context)?;
        }
        if self.scrape_interval < Duration::from_secs(1) {
            return Err(ConfigError::value(
                "cluster.scrape_interval",
                &humantime::format_duration(self.scrape_interval).to_string(),
                "use at least 1s",
            ));
        }
        if !matches!(self.extra_values, serde_yaml::Value::Null | serde_yaml::Value::Mapping(_)) {
            return Err(ConfigError::value(
                "cluster.extra_values",
                "(not a mapping)",
                "give a mapping of chart values",
            ));
        }
        Ok(())
    }
}

/// Directory overrides. Empty: `$XDG_DATA_HOME/greenflow` and `$XDG_STATE_HOME/greenflow`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathsConfig {
    /// Samples, Grafana's database, run records, generated secrets. Relative paths are taken from the config file's
    /// directory.
    pub data_dir: Option<PathBuf>,
    /// Pid file, logs and generated configuration of running components.
    pub state_dir: Option<PathBuf>,
}

/// A VictoriaMetrics retention period: digits with an optional unit (`h`, `d`, `w`, `y`; none means months).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Retention(String);

impl Retention {
    /// The value as VictoriaMetrics' `-retentionPeriod` takes it.
    pub fn as_flag_value(&self) -> &str {
        &self.0
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self("100y".into())
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Retention> for String {
    fn from(value: Retention) -> Self {
        value.0
    }
}

impl From<String> for Retention {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl Retention {
    /// Checks the value: VictoriaMetrics accepts digits with `h`, `d`, `w`, `y` or none (months), of at least a day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let value = &self.0;
        let bad = || {
            ConfigError::value(
                "sink.retention",
                value,
                "use a whole number with h, d, w or y (e.g. 100y, 90d) of at least one day",
            )
        };
        let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
        let (digits, unit) = value.split_at(digits_end);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let hours = match unit {
            "h" => number,
            "d" => number.saturating_mul(24),
            "w" => number.saturating_mul(24 * 7),
            "y" => number.saturating_mul(24 * 365),
            "" => number.saturating_mul(24 * 31),
            _ => return Err(bad()),
        };
        if hours < 24 {
            return Err(bad());
        }
        Ok(())
    }
}

/// Where the cluster sends samples: an URL base (`https://host[:port]`) with the remote-write path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or address.
    pub host: String,
    /// The port when it is not the scheme's default.
    pub port: Option<u16>,
    /// The full remote-write URL.
    pub remote_write_url: String,
}

impl PublicAddress {
    /// Parses a host name (`laptop.tail1234.ts.net`, meaning https) or an `http(s)://host[:port]` URL. `key` names
    /// the setting for the error message.
    pub fn parse(value: &str, key: &str) -> Result<Self, ConfigError> {
        let with_scheme = if value.contains("://") { value.to_owned() } else { format!("https://{value}") };
        let url = url::Url::parse(&with_scheme).map_err(|_| {
            ConfigError::value(key, value, "use a host name such as laptop.tail1234.ts.net or an https:// URL")
        })?;
        let address = Self::from_url(&url, value, key)?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::value(
                key,
                value,
                "give only the scheme, host and port; greenflow adds the /vm/ paths",
            ));
        }
        Ok(address)
    }

    /// Takes a full remote-write URL as the original project's `EXPERIMENT_STORAGE_URL` held it.
    pub fn from_remote_write_url(value: &str, key: &str) -> Result<Self, ConfigError> {
        let url = url::Url::parse(value).map_err(|_| {
            ConfigError::value(key, value, "use a full URL such as https://laptop.tail1234.ts.net/vm/api/v1/write")
        })?;
        let mut address = Self::from_url(&url, value, key)?;
        address.remote_write_url = value.to_owned();
        Ok(address)
    }

    fn from_url(url: &url::Url, value: &str, key: &str) -> Result<Self, ConfigError> {
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(ConfigError::value(key, value, "use an http:// or https:// address"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => {
                let valid = domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
                if !valid {
                    return Err(ConfigError::value(
                        key,
                        value,
                        "a host name is made of letters, digits, '-' and '.' (e.g. laptop.tail1234.ts.net)",
                    ));
                }
                domain.to_owned()
            }
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(ConfigError::value(key, value, "the address needs a host name")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::value(
                key,
                value,
                "remove the credentials from the URL; the password comes from GREENFLOW_SINK_PASSWORD",
            ));
        }
        let port = url.port();
        let authority = match port {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        Ok(Self {
            scheme: scheme.to_owned(),
            remote_write_url: format!("{scheme}://{authority}/vm/api/v1/write"),
            host,
            port,
        })
    }

    /// The URL base without a path, e.g. `https://laptop.tail1234.ts.net`.
    pub fn base_url(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{}", self.scheme, self.host, port),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// Whether the host is a Tailscale name (its certificate comes from tailscaled).
    pub fn is_tailnet(&self) -> bool {
        self.host.ends_with(".ts.net")
    }
}
