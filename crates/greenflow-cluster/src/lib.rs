//! greenflow's cluster side.
//!
//! What it does: renders the kube-prometheus-stack values that make the cluster's Prometheus write to the sink
//! ([`helm_values`]); installs the chart and the remote-write Secret ([`KubeCluster::install`], helm through duct);
//! scales the chart's Prometheus resource up and down with a JSON merge patch and waits for it at the current
//! generation; holds the experiment lock (a `coordination.k8s.io/v1` Lease); reads Prometheus' own `/metrics`
//! through the API server's service proxy. Everything goes through an injected [`kube::Client`], so tests use a fake
//! API server (the `testing` module, behind the `testing` feature).
//!
//! What it does not: decide when to scale or whether a run is drained (that is `greenflow-runs`), parse metrics, or
//! read the sink's secrets (the password is handed in by the caller and never printed).

mod diagnose;
mod error;
mod install;
mod kube_cluster;
mod lease;
mod prometheus;
pub mod rbac;
mod route;
mod status;
#[cfg(feature = "testing")]
pub mod testing;

pub use diagnose::{SidecarState, last_remote_write_error, likely_cause};
pub use error::ClusterError;
pub use install::{
    CHART_NAME, Change, ChartSource, Helm, InstallPlan, InstallReport, UninstallReport, check_route_auth_key,
};
pub use kube_cluster::{ClusterNames, KubeCluster, connect};
pub use lease::LeaseInfo;
pub use prometheus::{
    Condition, PROMETHEUS_APP_LABEL, PROMETHEUS_POD_PORT, PROMETHEUS_PORT_NAME, PrometheusInfo, PrometheusPod,
};
pub use route::{FUNNEL_PORTS, Route, default_reach, route, sidecar_hostname};
pub use status::{ClusterStatus, ReleaseInfo, one_line};

use std::time::Duration;

use greenflow_config::Settings;
use greenflow_render::{HelmRemoteWrite, HelmValuesInput, HostAlias, QueueConfig, render_helm_values};

/// The name of the remote-write queue (the `remoteWrite` entry) that writes to the sink; Prometheus' metrics carry
/// it as `remote_name`.
pub const REMOTE_NAME: &str = "greenflow-sink";

/// The label that names the deployment (cluster or site) on every sample.
pub const DEPLOYMENT_LABEL: &str = "greenflow_deployment";

/// Prometheus' `--storage.remote.flush-deadline` in the cluster: a last resort at scale-down (greenflow drains the
/// queue before it scales down), long enough to send a backlog over a slow link.
pub const CLUSTER_FLUSH_DEADLINE: Duration = Duration::from_secs(600);

/// The Prometheus pod's termination grace period: the flush deadline and a minute more, so that the kubelet's
/// SIGKILL never cuts a flush short.
pub const CLUSTER_TERMINATION_GRACE: Duration = Duration::from_secs(660);

/// The kube-prometheus-stack values for these settings, with the route for `cluster.reach` (`sink_ip`: the sink's
/// tailnet IP for the `nodes` route, see [`route`]).
pub fn helm_values(settings: &Settings, sink_ip: Option<std::net::IpAddr>) -> Result<String, ClusterError> {
    let route = route(settings, sink_ip)?;
    let cluster = &settings.config.cluster;
    let rw = &settings.config.remote_write;
    let input = HelmValuesInput {
        scrape_interval: cluster.scrape_interval,
        external_labels: vec![(DEPLOYMENT_LABEL.to_owned(), cluster.deployment.clone())],
        flush_deadline: CLUSTER_FLUSH_DEADLINE,
        node_selector: cluster.node_selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        remote_write: vec![HelmRemoteWrite {
            name: REMOTE_NAME.into(),
            url: route.url.clone(),
            secret_name: cluster.remote_write_secret.clone(),
            tls_server_name: route.tls_server_name.clone(),
            proxy_url: route.proxy_url.clone(),
        }],
        queue: QueueConfig::from(rw),
        scaphandre: cluster.scaphandre,
        termination_grace_period: CLUSTER_TERMINATION_GRACE,
        storage: cluster.storage.as_ref().map(|s| (s.size.clone(), s.class.clone())),
        sidecar: route.sidecar.clone(),
        egress: route.egress.clone(),
        host_aliases: route
            .host_aliases
            .iter()
            .map(|(ip, name)| HostAlias { ip: ip.to_string(), hostnames: vec![name.clone()] })
            .collect(),
    };
    Ok(render_helm_values(&input, &cluster.extra_values)?)
}
