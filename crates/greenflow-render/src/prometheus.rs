//! The configuration of the local stand-in cluster's Prometheus (agent mode). The remote-write part is the same
//! data the cluster's Helm values carry, so both paths send alike.

use std::time::Duration;

use askama::Template;

use crate::escape::prometheus_duration;
use crate::{RenderError, reparse_yaml};

/// One sink to write to (design section 9: sinks are a list).
#[derive(Debug, Clone)]
pub struct RemoteWriteTarget {
    /// Queue name, shown in Prometheus' `remote_name` label.
    pub name: String,
    /// Remote-write URL.
    pub url: String,
    /// Basic-auth user name.
    pub username: String,
    /// File holding the password (mode 0600; the password never enters the configuration).
    pub password_file: String,
    /// An HTTP proxy every request goes through (`proxy_url`), as the cluster's Prometheus uses its Tailscale
    /// sidecar's.
    pub proxy_url: Option<String>,
}

/// Remote-write queue settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Samples buffered per shard.
    pub capacity: u32,
    /// Samples per request.
    pub max_samples_per_send: u32,
    /// Longest wait before a partial batch is sent.
    pub batch_send_deadline: Duration,
    /// Most parallel senders.
    pub max_shards: u32,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl From<&greenflow_config::RemoteWriteConfig> for QueueConfig {
    fn from(rw: &greenflow_config::RemoteWriteConfig) -> Self {
        Self {
            capacity: rw.capacity,
            max_samples_per_send: rw.max_samples_per_send,
            batch_send_deadline: rw.batch_send_deadline,
            max_shards: rw.max_shards,
            min_backoff: rw.min_backoff,
            max_backoff: rw.max_backoff,
        }
    }
}

/// One scrape job with a single static target.
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    /// The `job` label.
    pub name: String,
    /// `host:port`.
    pub target: String,
}

/// What the agent's configuration needs.
#[derive(Debug, Clone)]
pub struct AgentConfigInput {
    /// Scrape interval.
    pub scrape_interval: Duration,
    /// External labels added to every sample sent (`greenflow_run`, `greenflow_experiment`, ...), in order.
    pub external_labels: Vec<(String, String)>,
    /// What to scrape.
    pub scrape_jobs: Vec<ScrapeJob>,
    /// Where to send.
    pub remote_write: Vec<RemoteWriteTarget>,
    /// How to send.
    pub queue: QueueConfig,
}

/// Queue settings as templates print them (durations in Prometheus' format).
pub(crate) struct QueueView {
    pub(crate) capacity: u32,
    pub(crate) max_samples_per_send: u32,
    pub(crate) batch_send_deadline: String,
    pub(crate) max_shards: u32,
    pub(crate) min_backoff: String,
    pub(crate) max_backoff: String,
}

impl From<&QueueConfig> for QueueView {
    fn from(q: &QueueConfig) -> Self {
        Self {
            capacity: q.capacity,
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: prometheus_duration(q.batch_send_deadline),
            max_shards: q.max_shards,
            min_backoff: prometheus_duration(q.min_backoff),
            max_backoff: prometheus_duration(q.max_backoff),
        }
    }
}

#[derive(Template)]
#[template(path = "prometheus/agent.yaml")]
struct AgentTemplate<'a> {
    scrape_interval: String,
    external_labels: &'a [(String, String)],
    scrape_jobs: &'a [ScrapeJob],
    remote_write: &'a [RemoteWriteTarget],
    queue: QueueView,
}

/// Whether a string is a valid Prometheus label name.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Renders `prometheus.yml` for the agent and parses it back.
pub fn render_agent_config(input: &AgentConfigInput) -> Result<String, RenderError> {
    if let Some((name, _)) = input.external_labels.iter().find(|(name, _)| !is_label_name(name)) {
        return Err(RenderError::unsafe_value(
            "external label",
            name,
            "label names are letters, digits and '_', not starting with a digit",
        ));
    }
    if let Some(proxy) =
        input.remote_write.iter().filter_map(|t| t.proxy_url.as_deref()).find(|p| !p.starts_with("http://"))
    {
        return Err(RenderError::unsafe_value("remote-write proxy URL", proxy, "use an http:// proxy URL"));
    }
    let text = AgentTemplate {
        scrape_interval: prometheus_duration(input.scrape_interval),
        external_labels: &input.external_labels,
        scrape_jobs: &input.scrape_jobs,
        remote_write: &input.remote_write,
        queue: QueueView::from(&input.queue),
    }
    .render()
    .map_err(RenderError::template("prometheus/agent.yaml"))?;
    reparse_yaml("prometheus/agent.yaml", &text)?;
    Ok(text)
}
