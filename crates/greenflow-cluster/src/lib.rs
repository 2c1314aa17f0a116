//! greenflow's cluster side.
//!
//! Today: the kube-prometheus-stack values that make the cluster's Prometheus write to the sink. Next: installing the
//! chart, the remote-write Secret, scaling the Prometheus resource and the experiment lock, through kube-rs with an
//! injected client. This crate never reads the sink's secrets: the values only name the Secret.

use std::time::Duration;

use greenflow_config::{ConfigError, Settings};
use greenflow_render::{HelmRemoteWrite, HelmValuesInput, QueueConfig, RenderError, render_helm_values};

/// The label that names the deployment (cluster or site) on every sample.
pub const DEPLOYMENT_LABEL: &str = "greenflow_deployment";

/// Prometheus' `--storage.remote.flush-deadline` in the cluster: a last resort at scale-down (greenflow drains the
/// queue before it scales down), long enough to send a backlog over a slow link.
pub const CLUSTER_FLUSH_DEADLINE: Duration = Duration::from_secs(600);

/// Why values could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No address for the cluster to write to.
    #[error(
        "the cluster needs the sink's public address: set sink.public_host in greenflow.yaml (e.g. \
         laptop.tail1234.ts.net), or NODENAME and TAILSCALE_DOMAIN, or EXPERIMENT_STORAGE_URL"
    )]
    NoPublicAddress,
    /// The settings are not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// The kube-prometheus-stack values for these settings.
pub fn helm_values(settings: &Settings) -> Result<String, ClusterError> {
    let public = settings.public_address()?.ok_or(ClusterError::NoPublicAddress)?;
    let cluster = &settings.config.cluster;
    let rw = &settings.config.remote_write;
    let input = HelmValuesInput {
        scrape_interval: cluster.scrape_interval,
        external_labels: vec![(DEPLOYMENT_LABEL.to_owned(), cluster.deployment.clone())],
        flush_deadline: CLUSTER_FLUSH_DEADLINE,
        node_selector: cluster.node_selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        remote_write: vec![HelmRemoteWrite {
            name: "greenflow-sink".into(),
            url: public.remote_write_url.clone(),
            secret_name: cluster.remote_write_secret.clone(),
            tls_server_name: cluster.tls_server_name.clone(),
        }],
        queue: QueueConfig::from(rw),
        scaphandre: cluster.scaphandre,
    };
    Ok(render_helm_values(&input, &cluster.extra_values)?)
}
