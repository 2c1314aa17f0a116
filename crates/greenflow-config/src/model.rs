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
    /// What `greenflow report` computes beyond its defaults: energy per unit of work, the researcher's queries.
    pub report: crate::report::ReportConfig,
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
        let config = Self::parse_yaml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a configuration file without [`Config::validate`], for a caller that validates it together with the
    /// environment.
    pub(crate) fn parse_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse_yaml(&text).map_err(|err| err.in_file(path))
    }

    fn parse_yaml(text: &str) -> Result<Self, ConfigError> {
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
        parsed.map_err(|source| ConfigError::Invalid { message: source.to_string() })
    }

    /// Checks the relations between fields that types alone cannot express. Every problem is reported, not just
    /// the first ([`ConfigError::Several`] when there is more than one).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        let sink = &self.sink;
        let ports = [
            ("sink.http_port", sink.http_port),
            ("sink.funnel_port", sink.funnel_port),
            ("sink.victoria_metrics.port", sink.victoria_metrics.port),
            ("sink.grafana.port", sink.grafana.port),
        ];
        for (i, (key, port)) in ports.iter().enumerate() {
            if *port == 0 {
                problems.push(ConfigError::value(key, "0", "use a port between 1 and 65535"));
            } else if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                problems.push(ConfigError::value(
                    key,
                    &port.to_string(),
                    &format!("it is already used by {other}; give each sink component its own port"),
                ));
            }
        }
        // The stand-in cluster's ports (0: a free one at start) must not take one of the sink's, nor each other's.
        let local_ports = [
            ("local.prometheus_port", self.local.prometheus_port),
            ("local.node_exporter_port", self.local.node_exporter_port),
        ];
        for (i, (key, port)) in local_ports.iter().enumerate() {
            if *port == 0 {
                continue;
            }
            if let Some((other, _)) = ports.iter().chain(&local_ports[..i]).find(|(_, p)| p == port) {
                problems.push(ConfigError::value(
                    key,
                    &port.to_string(),
                    &format!("it is already used by {other}; choose another port, or 0 for a free one"),
                ));
            }
        }
        problems.check(sink.retention.validate());
        problems.check(validate_plain_text("sink.username", &sink.username).and_then(|()| {
            if sink.username.contains(':') {
                return Err(ConfigError::value(
                    "sink.username",
                    &sink.username,
                    "HTTP basic auth user names cannot contain ':'; choose a name without it",
                ));
            }
            Ok(())
        }));
        problems.check(validate_plain_text("sink.grafana.admin_user", &sink.grafana.admin_user));
        if let Some(host) = &sink.public_host {
            problems.check(PublicAddress::parse(host, "sink.public_host").map(|_| ()));
        }
        problems.check(validate_extra_args(&sink.victoria_metrics.extra_args));
        problems.check(check_duration(
            "sink.victoria_metrics.search_latency_offset",
            sink.victoria_metrics.search_latency_offset,
            Duration::ZERO,
            "e.g. 2s",
        ));
        problems.check(check_duration(
            "local.scrape_interval",
            self.local.scrape_interval,
            Duration::from_secs(1),
            "e.g. 5s",
        ));
        if let Some(proxy) = &self.local.proxy_url {
            problems.check(validate_proxy_url("local.proxy_url", proxy));
        }
        for (i, target) in self.local.scrape_targets.iter().enumerate() {
            problems.check(validate_scrape_target(&format!("local.scrape_targets[{i}]"), target));
        }
        problems.check(self.cluster.validate());
        problems.check(self.run.validate());
        problems.check(self.remote_write.validate());
        problems.check(self.report.validate());
        problems.finish()
    }
}

/// Collects the problems of one validation pass, so that all are reported at once.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    /// Adds a problem ([`ConfigError::Several`] adds each of its own).
    pub(crate) fn push(&mut self, error: ConfigError) {
        match error {
            ConfigError::Several { errors } => self.0.extend(errors),
            other => self.0.push(other),
        }
    }

    /// Adds the problem of a failed check.
    pub(crate) fn check(&mut self, result: Result<(), ConfigError>) {
        if let Err(error) = result {
            self.push(error);
        }
    }

    /// Nothing, the one problem, or [`ConfigError::Several`].
    pub(crate) fn finish(mut self) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Several { errors: self.0 }),
        }
    }
}

/// The longest duration any setting takes: 100 years (VictoriaMetrics' longest retention), far below what would
/// overflow a clock.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Checks that a duration lies between `min` and [`MAX_DURATION`]; `example` ends the message.
fn check_duration(key: &str, value: Duration, min: Duration, example: &str) -> Result<(), ConfigError> {
    let shown = || humantime::format_duration(value).to_string();
    if value < min {
        let least = humantime::format_duration(min);
        return Err(ConfigError::value(key, &shown(), &format!("use at least {least}, {example}")));
    }
    if value > MAX_DURATION {
        return Err(ConfigError::value(key, &shown(), &format!("use at most 100y, {example}")));
    }
    Ok(())
}

/// The VictoriaMetrics flags greenflow sets itself, with the setting to use instead.
const OWNED_VM_FLAGS: [(&str, &str); 6] = [
    ("httpListenAddr", "set sink.victoria_metrics.port instead (it always listens on 127.0.0.1; Caddy is the door)"),
    ("storageDataPath", "set paths.data_dir instead"),
    ("retentionPeriod", "set sink.retention instead"),
    ("search.latencyOffset", "set sink.victoria_metrics.search_latency_offset instead"),
    ("envflag.enable", "remove it: greenflow gives every flag on the command line, not through the environment"),
    ("envflag.prefix", "remove it: greenflow gives every flag on the command line, not through the environment"),
];

/// Refuses extra VictoriaMetrics flags that would override greenflow's own, or put credentials on a command line
/// every local user can read. Only the flag's name is shown, never its value.
fn validate_extra_args(args: &[String]) -> Result<(), ConfigError> {
    const KEY: &str = "sink.victoria_metrics.extra_args";
    for arg in args {
        let name = arg.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(name, _)| name);
        let fix = if let Some((_, fix)) = OWNED_VM_FLAGS.iter().find(|(flag, _)| *flag == name) {
            *fix
        } else if name.ends_with("AuthKey") || name.starts_with("httpAuth.") {
            "remove it: Caddy guards the sink with sink.username and GREENFLOW_SINK_PASSWORD, and a key on \
             VictoriaMetrics' command line is readable by every local user"
        } else {
            continue;
        };
        return Err(ConfigError::Value {
            key: KEY.to_owned(),
            value: format!("-{}", name.escape_debug()),
            fix: format!("greenflow sets this flag itself; {fix}"),
        });
    }
    Ok(())
}

/// Checks an HTTP proxy URL: `http://host:port` and nothing more (no credentials, no path).
/// A scrape target is `host:port`, as Prometheus' `static_configs` take it.
fn validate_scrape_target(key: &str, value: &str) -> Result<(), ConfigError> {
    let fix = "give host:port of an endpoint serving /metrics, e.g. 127.0.0.1:9308 (no scheme, no path)";
    let Some((host, port)) = value.rsplit_once(':') else { return Err(ConfigError::value(key, value, fix)) };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(ConfigError::value(key, value, fix));
    }
    Ok(())
}

fn validate_proxy_url(key: &str, value: &str) -> Result<(), ConfigError> {
    refuse_user_info(value, key)?;
    let fix = "give an http://host:port proxy URL, e.g. http://127.0.0.1:1055";
    let url = url::Url::parse(value).map_err(|_| url_error(key, value, fix))?;
    let ok = url.scheme() == "http"
        && url.host().is_some()
        && url.port().is_some_and(|p| p > 0)
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !ok {
        return Err(url_error(key, value, fix));
    }
    Ok(())
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
    /// Loopback port of the write-only site that Tailscale Funnel publishes (`cluster.reach: funnel`).
    pub funnel_port: u16,
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

    /// The reader's user name, `<username>-reader`: Grafana's credential, good for the query API only.
    pub fn reader_username(&self) -> String {
        format!("{}-reader", self.username)
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            username: "greenflow".into(),
            retention: Retention::default(),
            public_host: None,
            http_port: 8080,
            funnel_port: 8444,
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
    /// No longer used: Caddy's admin API is a unix socket in the state directory. Kept so that existing files load.
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
            batch_send_deadline: Duration::from_secs(1),
            max_shards: 10,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RemoteWriteConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("remote_write.capacity", self.capacity),
            ("remote_write.max_samples_per_send", self.max_samples_per_send),
            ("remote_write.max_shards", self.max_shards),
        ] {
            if value == 0 {
                return Err(ConfigError::value(
                    key,
                    "0",
                    "use at least 1; the defaults are in `greenflow init`'s file",
                ));
            }
        }
        let ms = Duration::from_millis(1);
        check_duration("remote_write.batch_send_deadline", self.batch_send_deadline, ms, "e.g. 5s")?;
        check_duration("remote_write.min_backoff", self.min_backoff, ms, "e.g. 500ms")?;
        check_duration("remote_write.max_backoff", self.max_backoff, ms, "e.g. 10s")?;
        if self.min_backoff > self.max_backoff {
            return Err(ConfigError::value(
                "remote_write.min_backoff",
                &humantime::format_duration(self.min_backoff).to_string(),
                &format!(
                    "it is longer than remote_write.max_backoff ({}); make min_backoff at most max_backoff",
                    humantime::format_duration(self.max_backoff)
                ),
            ));
        }
        Ok(())
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
            check_duration(key, value, Duration::from_secs(1), "e.g. 5m")?;
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
    /// An HTTP proxy the agent sends remote write through (`http://host:port`), the way the cluster's Prometheus
    /// goes through its Tailscale sidecar's proxy. None: straight to the sink.
    pub proxy_url: Option<String>,
    /// The experiment's own metrics endpoints on this machine (`host:port`, serving `/metrics`), scraped beside
    /// node-exporter as jobs `experiment-1`, `experiment-2`, ... (the cluster's ServiceMonitors do this there).
    pub scrape_targets: Vec<String>,
}

impl Default for LocalClusterConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Duration::from_secs(1),
            prometheus_binary: None,
            node_exporter_binary: None,
            prometheus_port: 0,
            node_exporter_port: 0,
            proxy_url: None,
            scrape_targets: Vec::new(),
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
    /// Where the chart comes from: a Helm repository (`https://...`), an OCI registry (`oci://...`, the chart is
    /// `<it>/kube-prometheus-stack`), or a directory holding `kube-prometheus-stack-<chart_version>.tgz` (what
    /// `helm pull` saves), for clusters that cannot reach the repository.
    pub chart_repository: String,
    /// Value of the `greenflow_deployment` label on every sample (e.g. the site: `g5k-nancy`).
    pub deployment: String,
    /// Scrape interval of Prometheus and node-exporter in the cluster.
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// Node selector for the Prometheus pod.
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Scrape Scaphandre's power metrics with a ServiceMonitor.
    pub scaphandre: bool,
    /// TLS server name for the remote-write connection, when the URL's host is not the certificate's (the
    /// `operator` route sets it itself). The sink answers only requests whose `Host` is a name it serves.
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
    /// A persistent volume for Prometheus' data, so that its write-ahead log (which holds the remote-write queue)
    /// survives a restart of the pod. None: an emptyDir, which dies with the pod.
    pub storage: Option<ClusterStorage>,
    /// How the cluster's Prometheus reaches the sink. None: `sidecar` for a tailnet (`*.ts.net`) name, else
    /// `direct`.
    pub reach: Option<Reach>,
    /// The Tailscale parts of the routes: the sidecar's image, name and resources, the sink's tailnet address for
    /// `nodes`, the egress Service for `operator`.
    pub tailscale: ClusterTailscale,
}

/// The cluster's route to the sink (`cluster.reach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A Tailscale container in the Prometheus pod (userspace, ephemeral node); remote write goes through its
    /// HTTP proxy on loopback.
    Sidecar,
    /// The sink's write-only site published on the internet with Tailscale Funnel; the cluster needs no tailnet.
    Funnel,
    /// The nodes are on the tailnet already: the URL uses the sink's tailnet IP, TLS checks the tailnet name.
    Nodes,
    /// The Tailscale Kubernetes operator is installed: an egress Service carries remote write to the tailnet.
    Operator,
    /// The URL as given: an address every node can reach (a tunnel, a public host).
    Direct,
}

impl Reach {
    /// Every route, in documentation order.
    pub const ALL: [Reach; 5] = [Self::Sidecar, Self::Funnel, Self::Nodes, Self::Operator, Self::Direct];

    /// The name used in `greenflow.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Funnel => "funnel",
            Self::Nodes => "nodes",
            Self::Operator => "operator",
            Self::Direct => "direct",
        }
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Tailscale settings of the cluster's routes (`cluster.tailscale`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterTailscale {
    /// The sidecar's image, pinned by version.
    pub image: String,
    /// The sidecar's node name on the tailnet. None: `greenflow-<deployment>` cut to a DNS label.
    pub hostname: Option<String>,
    /// The Secret (key `TS_AUTHKEY`) that `greenflow cluster install` creates from `TS_AUTHKEY` for the sidecar.
    pub auth_key_secret: String,
    /// The loopback port of the sidecar's outbound HTTP proxy.
    pub proxy_port: u16,
    /// The sidecar's CPU request, a Kubernetes quantity.
    pub cpu_request: String,
    /// The sidecar's memory request and limit, a Kubernetes quantity.
    pub memory: String,
    /// For `nodes`: the sink's tailnet IP. None: read from `tailscale status --json` on this machine.
    pub sink_ip: Option<std::net::IpAddr>,
    /// For `operator`: the egress Service greenflow's values create in the release's namespace.
    pub egress_service: String,
    /// Tags the sidecar's node asks for (`--advertise-tags`), e.g. `[tag:greenflow]`. Empty: the auth key's own
    /// tags. Needed when `TS_AUTHKEY` is an OAuth client secret (`tskey-client-...`), whose nodes must be tagged.
    pub tags: Vec<String>,
}

/// The Tailscale release the sidecar runs by default (its container image tag): the latest stable release read
/// (`VERSION.txt` at tag v1.102.3; images are published to Docker Hub and synced to ghcr.io).
pub const TAILSCALE_IMAGE: &str = "ghcr.io/tailscale/tailscale:v1.102.3";

impl Default for ClusterTailscale {
    fn default() -> Self {
        Self {
            image: TAILSCALE_IMAGE.into(),
            hostname: None,
            auth_key_secret: "greenflow-tailscale-auth".into(),
            proxy_port: 1055,
            cpu_request: "50m".into(),
            memory: "128Mi".into(),
            sink_ip: None,
            egress_service: "greenflow-sink".into(),
            tags: Vec::new(),
        }
    }
}

impl ClusterTailscale {
    fn validate(&self) -> Result<(), ConfigError> {
        let image_ok = !self.image.is_empty()
            && self.image.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
            && (self.image.contains('@') || self.image.rsplit('/').next().is_some_and(|last| last.contains(':')));
        if !image_ok {
            return Err(ConfigError::value(
                "cluster.tailscale.image",
                &self.image,
                &format!("give an image pinned by tag or digest, e.g. {TAILSCALE_IMAGE}"),
            ));
        }
        if let Some(hostname) = self.hostname.as_ref().filter(|h| !is_dns_label(h)) {
            return Err(ConfigError::value(
                "cluster.tailscale.hostname",
                hostname,
                "a tailnet node name is lower-case letters, digits and '-' (at most 63), e.g. greenflow-g5k",
            ));
        }
        for (key, value) in [
            ("cluster.tailscale.auth_key_secret", &self.auth_key_secret),
            ("cluster.tailscale.egress_service", &self.egress_service),
        ] {
            if !is_dns_label(value) {
                return Err(ConfigError::value(
                    key,
                    value,
                    "Kubernetes names are lower-case letters, digits and '-' (at most 63), e.g. greenflow-sink",
                ));
            }
        }
        for tag in &self.tags {
            let name = tag.strip_prefix("tag:").unwrap_or_default();
            let ok = name.len() <= 63
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(ConfigError::value(
                    "cluster.tailscale.tags",
                    tag,
                    "a Tailscale tag is `tag:` and a name of letters, digits and '-' starting with a letter, e.g. \
                     tag:greenflow",
                ));
            }
        }
        if self.proxy_port == 0 || self.proxy_port == 9090 || self.proxy_port == 8080 {
            return Err(ConfigError::value(
                "cluster.tailscale.proxy_port",
                &self.proxy_port.to_string(),
                "use a free port of the Prometheus pod's loopback (not 0, 9090 or 8080), e.g. 1055",
            ));
        }
        for (key, value) in
            [("cluster.tailscale.cpu_request", &self.cpu_request), ("cluster.tailscale.memory", &self.memory)]
        {
            if !is_quantity(value, key.ends_with("cpu_request")) {
                return Err(ConfigError::value(
                    key,
                    value,
                    "give a Kubernetes quantity such as 50m (CPU) or 128Mi (memory)",
                ));
            }
        }
        Ok(())
    }
}

/// A DNS label as Kubernetes names and tailnet node names take it: 1 to 63 lower-case letters, digits and '-',
/// not starting or ending with '-'.
pub(crate) fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// A whole-number Kubernetes quantity with a binary or decimal suffix (`m` allowed for CPU).
fn is_quantity(value: &str, cpu: bool) -> bool {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    let units: &[&str] = if cpu { &["", "m"] } else { &["", "k", "M", "G", "Ki", "Mi", "Gi"] };
    !digits.is_empty() && digits.parse::<u64>().is_ok_and(|n| n > 0) && units.contains(&unit)
}

/// Prometheus' persistent volume in the cluster (`cluster.storage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterStorage {
    /// The volume's size, a Kubernetes quantity such as `10Gi`.
    pub size: String,
    /// The StorageClass; none: the cluster's default class.
    #[serde(default)]
    pub class: Option<String>,
}

impl ClusterStorage {
    fn validate(&self) -> Result<(), ConfigError> {
        let digits = self.size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &self.size[digits.len()..];
        let ok = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && digits.parse::<u64>().is_ok_and(|n| n > 0)
            && ["", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi"].contains(&unit);
        if !ok {
            return Err(ConfigError::value(
                "cluster.storage.size",
                &self.size,
                "give a Kubernetes quantity such as 10Gi (a whole number and Ki, Mi, Gi, Ti, or k, M, G, T)",
            ));
        }
        if let Some(class) = &self.class {
            let ok = !class.is_empty()
                && class.len() <= 253
                && class.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !class.starts_with(['-', '.'])
                && !class.ends_with(['-', '.']);
            if !ok {
                return Err(ConfigError::value(
                    "cluster.storage.class",
                    class,
                    "a StorageClass name is lower-case letters, digits, '-' and '.', e.g. local-path",
                ));
            }
        }
        Ok(())
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            namespace: "monitoring".into(),
            release: "greenflow".into(),
            chart_version: "88.5.3".into(),
            chart_repository: "https://prometheus-community.github.io/helm-charts".into(),
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
            storage: None,
            reach: None,
            tailscale: ClusterTailscale::default(),
        }
    }
}

impl ClusterConfig {
    /// Whether the sink publishes its write-only site with Tailscale Funnel (`cluster.reach: funnel`).
    pub fn funnel(&self) -> bool {
        self.reach == Some(Reach::Funnel)
    }

    /// The in-cluster DNS name of the operator route's egress Service, which remote write goes to (and so the
    /// `Host` of its requests, which the sink's Caddy must answer to).
    pub fn egress_service_host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.tailscale.egress_service, self.namespace)
    }

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
        let repository = self.chart_repository.trim();
        let url = ["https://", "http://", "oci://"].iter().find_map(|scheme| repository.strip_prefix(scheme));
        if repository.is_empty()
            || repository != self.chart_repository
            || url.is_some_and(|rest| rest.is_empty() || rest.contains(char::is_whitespace))
        {
            return Err(ConfigError::value(
                "cluster.chart_repository",
                &self.chart_repository,
                "give a Helm repository URL (https://prometheus-community.github.io/helm-charts), an oci:// URL, \
                 or a directory holding kube-prometheus-stack-<chart_version>.tgz",
            ));
        }
        validate_plain_text("cluster.deployment", &self.deployment)?;
        self.tailscale.validate()?;
        if let Some(storage) = &self.storage {
            storage.validate()?;
        }
        if let Some(context) = &self.context {
            validate_plain_text("cluster.context", context)?;
        }
        check_duration("cluster.scrape_interval", self.scrape_interval, Duration::from_secs(1), "e.g. 5s")?;
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
    /// Checks the value: VictoriaMetrics accepts digits with `h`, `d`, `w`, `y` or none (months of 31 days), of at
    /// least a day. It silently caps the period at 100 years (`retentionMax` in its `lib/storage/storage.go`), so
    /// anything longer is refused here rather than shortened there.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const MAX_HOURS: u64 = 100 * 365 * 24;
        let value = &self.0;
        let bad = |fix: &str| ConfigError::value("sink.retention", value, fix);
        let format = "use a whole number with h, d, w or y (e.g. 100y, 90d) of at least one day";
        let too_long = "VictoriaMetrics keeps data at most 100 years: use at most 100y (a bare number counts months \
                        of 31 days)";
        let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
        let (digits, unit) = value.split_at(digits_end);
        if digits.is_empty() || !matches!(unit, "h" | "d" | "w" | "y" | "") {
            return Err(bad(format));
        }
        // Only digits are left, so a failed parse means a number beyond u64.
        let Ok(number) = digits.parse::<u64>() else { return Err(bad(too_long)) };
        let hours_per_unit: u64 = match unit {
            "h" => 1,
            "d" => 24,
            "w" => 24 * 7,
            "y" => 24 * 365,
            _ => 24 * 31,
        };
        let hours = number.saturating_mul(hours_per_unit);
        if hours < 24 {
            return Err(bad(format));
        }
        if hours > MAX_HOURS {
            return Err(bad(too_long));
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
        refuse_user_info(value, key)?;
        let with_scheme = if value.contains("://") { value.to_owned() } else { format!("https://{value}") };
        let url = url::Url::parse(&with_scheme)
            .map_err(|_| url_error(key, value, "use a host name such as laptop.tail1234.ts.net or an https:// URL"))?;
        let address = Self::from_url(&url, value, key)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(url_error(
                key,
                value,
                "remove the query string or fragment; give only the scheme, host and port",
            ));
        }
        if url.path() != "/" {
            return Err(url_error(key, value, "give only the scheme, host and port; greenflow adds the /vm/ paths"));
        }
        Ok(address)
    }

    /// Takes a full remote-write URL as the original project's `EXPERIMENT_STORAGE_URL` held it.
    pub fn from_remote_write_url(value: &str, key: &str) -> Result<Self, ConfigError> {
        refuse_user_info(value, key)?;
        let url = url::Url::parse(value).map_err(|_| {
            url_error(key, value, "use a full URL such as https://laptop.tail1234.ts.net/vm/api/v1/write")
        })?;
        let mut address = Self::from_url(&url, value, key)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(url_error(
                key,
                value,
                "remove the query string or fragment, e.g. https://laptop.tail1234.ts.net/vm/api/v1/write",
            ));
        }
        address.remote_write_url = value.to_owned();
        Ok(address)
    }

    fn from_url(url: &url::Url, value: &str, key: &str) -> Result<Self, ConfigError> {
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(url_error(key, value, "use an http:// or https:// address"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(url_error(key, value, USER_INFO_FIX));
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
                    return Err(url_error(
                        key,
                        value,
                        "a host name is made of letters, digits, '-' and '.' (e.g. laptop.tail1234.ts.net)",
                    ));
                }
                domain.to_owned()
            }
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(url_error(key, value, "the address needs a host name")),
        };
        let port = url.port();
        if port == Some(0) {
            return Err(url_error(key, value, "use a port between 1 and 65535, or none for the scheme's default"));
        }
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

/// Why a URL with user info is refused.
const USER_INFO_FIX: &str = "remove the user name and password from the URL: credentials go in \
                             GREENFLOW_SINK_PASSWORD (and sink.username), not in the URL";

/// Refuses a URL (or bare host) with user info before anything else looks at it, so that no message echoes it.
fn refuse_user_info(value: &str, key: &str) -> Result<(), ConfigError> {
    if authority(value).contains('@') {
        return Err(url_error(key, value, USER_INFO_FIX));
    }
    Ok(())
}

/// Where the authority of a URL or bare `host[:port]/...` starts: after `scheme://`, after `http:` or `https:`
/// and any slashes (URL parsers accept `https:/host` and `https:\\host`), or at the start.
fn authority_start(value: &str) -> usize {
    if let Some(i) = value.find("://") {
        return i + 3;
    }
    let lower = value.to_ascii_lowercase();
    match ["https:", "http:"].iter().find(|scheme| lower.starts_with(*scheme)) {
        Some(scheme) => value.len() - value[scheme.len()..].trim_start_matches(['/', '\\']).len(),
        None => 0,
    }
}

/// The authority part of a URL or bare `host[:port]/...`: from [`authority_start`] up to the first `/`, `?`, `#`
/// or `\` (which URL parsers read as `/`).
fn authority(value: &str) -> &str {
    let rest = &value[authority_start(value)..];
    rest.split(['/', '?', '#', '\\']).next().unwrap_or(rest)
}

/// A URL with anything that could be user info replaced by `[redacted]`, for messages: everything from the start
/// of the authority to the last `@` before any query or fragment (a path with an `@` is redacted too, which costs
/// nothing in a message).
pub(crate) fn redact_url(value: &str) -> String {
    let start = authority_start(value);
    let end = value[start..].find(['?', '#']).map_or(value.len(), |i| start + i);
    match value[start..end].rfind('@') {
        Some(at) => format!("{}[redacted]{}", &value[..start], &value[start + at..]),
        None => value.to_owned(),
    }
}

/// A [`ConfigError::Value`] for a URL, shown without its user info.
fn url_error(key: &str, value: &str, fix: &str) -> ConfigError {
    ConfigError::value(key, &redact_url(value), fix)
}
