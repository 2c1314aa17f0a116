//! kube-prometheus-stack values: the cluster's Prometheus, at zero replicas, remote-writing to the sink with basic
//! auth from a Secret. User values from the configuration are deep-merged last.

use std::time::Duration;

use askama::Template;

use crate::escape::prometheus_duration;
use crate::prometheus::{QueueConfig, QueueView, is_label_name};
use crate::{RenderError, reparse_yaml};

/// One sink the cluster writes to.
#[derive(Debug, Clone)]
pub struct HelmRemoteWrite {
    /// Queue name (`remote_name` in Prometheus' metrics).
    pub name: String,
    /// Remote-write URL.
    pub url: String,
    /// The Secret holding keys `username` and `password`.
    pub secret_name: String,
    /// TLS server name, when the URL's host is not the certificate's (a tailnet IP, say).
    pub tls_server_name: Option<String>,
    /// An HTTP proxy the writes go through (the Tailscale sidecar's, on the pod's loopback).
    pub proxy_url: Option<String>,
}

/// One entry of the Prometheus pod's `/etc/hosts` (`hostAliases`).
#[derive(Debug, Clone)]
pub struct HostAlias {
    /// The address.
    pub ip: String,
    /// The names that resolve to it.
    pub hostnames: Vec<String>,
}

/// A Tailscale container in the Prometheus pod: a native sidecar (an init container that keeps running, started
/// before Prometheus and stopped after it), in userspace mode with its state in memory, so the pod is an ephemeral
/// tailnet node that joins at scale-up and leaves at scale-down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailscaleSidecar {
    /// The image, pinned by version.
    pub image: String,
    /// Its node name on the tailnet.
    pub hostname: String,
    /// The Secret with key `TS_AUTHKEY`.
    pub auth_key_secret: String,
    /// The loopback port of its outbound HTTP proxy.
    pub proxy_port: u16,
    /// CPU request.
    pub cpu_request: String,
    /// Memory request and limit.
    pub memory: String,
    /// Tags the node asks for (`--advertise-tags`); empty: the auth key's.
    pub tags: Vec<String>,
}

impl TailscaleSidecar {
    /// `--advertise-tags=tag:a,tag:b`, the `tailscale up` flag containerboot passes on from `TS_EXTRA_ARGS`.
    pub fn advertise_tags(&self) -> String {
        format!("--advertise-tags={}", self.tags.join(","))
    }
}

/// The container name of the Tailscale sidecar in the Prometheus pod.
pub const TAILSCALE_CONTAINER: &str = "tailscale";

/// The port of the sidecar's health endpoint (`/healthz`: 200 once the node has a tailnet address).
pub const TAILSCALE_HEALTH_PORT: u16 = 9002;

/// An egress Service for the Tailscale Kubernetes operator: an ExternalName Service whose
/// `tailscale.com/tailnet-fqdn` annotation makes the operator proxy it to that tailnet name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressService {
    /// The Service's name (in the release's namespace).
    pub name: String,
    /// The sink's tailnet name.
    pub tailnet_fqdn: String,
    /// The sink's HTTPS port.
    pub port: u16,
}

/// What the values need.
#[derive(Debug, Clone)]
pub struct HelmValuesInput {
    /// Scrape interval of Prometheus and node-exporter.
    pub scrape_interval: Duration,
    /// External labels every sample carries (`greenflow_deployment`, ...); a run adds its own at scale-up.
    pub external_labels: Vec<(String, String)>,
    /// Prometheus' `--storage.remote.flush-deadline`.
    pub flush_deadline: Duration,
    /// Node selector for the Prometheus pod.
    pub node_selector: Vec<(String, String)>,
    /// Where to write.
    pub remote_write: Vec<HelmRemoteWrite>,
    /// How to send.
    pub queue: QueueConfig,
    /// Whether to add a ServiceMonitor for Scaphandre.
    pub scaphandre: bool,
    /// How long the pod may take to stop after SIGTERM (above the flush deadline, so the flush can finish).
    pub termination_grace_period: Duration,
    /// A persistent volume for Prometheus' data: size and StorageClass (none: the default class).
    pub storage: Option<(String, Option<String>)>,
    /// The Tailscale sidecar, for the `sidecar` route.
    pub sidecar: Option<TailscaleSidecar>,
    /// The operator's egress Service, for the `operator` route.
    pub egress: Option<EgressService>,
    /// Names the pod resolves without the cluster's DNS (the `nodes` route's tailnet name).
    pub host_aliases: Vec<HostAlias>,
}

#[derive(Template)]
#[template(path = "helm/kube-prometheus-stack-values.yaml")]
struct ValuesTemplate<'a> {
    scrape_interval: String,
    external_labels: &'a [(String, String)],
    flush_deadline: String,
    node_selector: &'a [(String, String)],
    remote_write: &'a [HelmRemoteWrite],
    queue: QueueView,
    scaphandre: bool,
    termination_grace_seconds: u64,
    storage: Option<(String, Option<String>)>,
    sidecar: Option<&'a TailscaleSidecar>,
    egress: Option<&'a EgressService>,
    host_aliases: &'a [HostAlias],
    tailscale_container: &'static str,
    tailscale_health_port: u16,
}

/// Renders the values, parses them back, and deep-merges `extra` (a YAML mapping, or null) over them.
pub fn render_helm_values(input: &HelmValuesInput, extra: &serde_yaml::Value) -> Result<String, RenderError> {
    if let Some((name, _)) = input.external_labels.iter().find(|(name, _)| !is_label_name(name)) {
        return Err(RenderError::unsafe_value(
            "cluster external label",
            name,
            "label names are letters, digits and '_', not starting with a digit",
        ));
    }
    if let Some(target) =
        input.remote_write.iter().find(|t| !t.url.starts_with("https://") && !t.url.starts_with("http://"))
    {
        return Err(RenderError::unsafe_value("remote-write URL", &target.url, "use an http:// or https:// URL"));
    }
    if let Some(proxy) =
        input.remote_write.iter().filter_map(|t| t.proxy_url.as_deref()).find(|p| !p.starts_with("http://"))
    {
        return Err(RenderError::unsafe_value("remote-write proxy URL", proxy, "use an http:// proxy URL"));
    }
    // The chart passes extraManifests through Helm's `tpl`: a `{{` there would be run as a template.
    if let Some(egress) = &input.egress {
        for value in [&egress.name, &egress.tailnet_fqdn] {
            if value.contains("{{") || value.contains("}}") {
                return Err(RenderError::unsafe_value("egress Service", value, "remove the braces"));
            }
        }
    }
    let text = ValuesTemplate {
        scrape_interval: prometheus_duration(input.scrape_interval),
        external_labels: &input.external_labels,
        flush_deadline: prometheus_duration(input.flush_deadline),
        node_selector: &input.node_selector,
        remote_write: &input.remote_write,
        queue: QueueView::from(&input.queue),
        scaphandre: input.scaphandre,
        termination_grace_seconds: input.termination_grace_period.as_secs(),
        storage: input.storage.clone(),
        sidecar: input.sidecar.as_ref(),
        egress: input.egress.as_ref(),
        host_aliases: &input.host_aliases,
        tailscale_container: TAILSCALE_CONTAINER,
        tailscale_health_port: TAILSCALE_HEALTH_PORT,
    }
    .render()
    .map_err(RenderError::template("helm/kube-prometheus-stack-values.yaml"))?;
    let mut values = reparse_yaml("helm/kube-prometheus-stack-values.yaml", &text)?;
    match extra {
        serde_yaml::Value::Null => Ok(text),
        serde_yaml::Value::Mapping(map) if map.is_empty() => Ok(text),
        serde_yaml::Value::Mapping(_) => {
            deep_merge(&mut values, extra);
            let merged = serde_yaml::to_string(&values).map_err(|source| RenderError::Reparse {
                template: "helm/kube-prometheus-stack-values.yaml",
                source,
            })?;
            Ok(format!("# Generated by greenflow; cluster.extra_values merged last.\n{merged}"))
        }
        _ => {
            Err(RenderError::unsafe_value("cluster.extra_values", "(not a mapping)", "give a mapping of chart values"))
        }
    }
}

/// Merges `overlay` into `base`: mappings key by key, anything else replaced (as Helm merges values files).
pub fn deep_merge(base: &mut serde_yaml::Value, overlay: &serde_yaml::Value) {
    match (base, overlay) {
        (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}
