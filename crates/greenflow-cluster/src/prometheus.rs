//! The chart's Prometheus resource (`monitoring.coreos.com/v1` `Prometheus`): finding it, scaling it with a JSON
//! merge patch of `spec.replicas` and `spec.externalLabels` (never the /scale subresource, which maps to
//! `spec.shards`), waiting for it at the patched generation and for its pods to come and go, and reading its
//! `/metrics` through the API server's pod proxy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};

/// The field manager of greenflow's writes, so that `kubectl get --show-managed-fields` and server-side apply
/// (Helm 4) see who owns `spec.replicas` and `spec.externalLabels`.
pub const FIELD_MANAGER: &str = "greenflow";
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ClusterError, api_code};
use crate::kube_cluster::KubeCluster;

/// The `app` label kube-prometheus-stack puts on its Prometheus resource and Service (the `release` label names
/// the release).
pub const PROMETHEUS_APP_LABEL: &str = "kube-prometheus-stack-prometheus";

/// The port name of the chart's Prometheus Service (port 9090).
pub const PROMETHEUS_PORT_NAME: &str = "http-web";

/// The port Prometheus listens on in its pod (the operator's `web` container port).
pub const PROMETHEUS_POD_PORT: u16 = 9090;

/// How long one read of Prometheus' `/metrics` through the API server may take: the API server treats proxy
/// requests as long-running and kube's client has no read timeout of its own.
const METRICS_TIMEOUT: Duration = Duration::from_secs(15);

/// One pod of the Prometheus resource (the operator's StatefulSet `prometheus-<name>`: pod `prometheus-<name>-0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrometheusPod {
    /// The pod's name.
    pub name: String,
    /// `status.phase` (`Pending`, `Running`, ...).
    pub phase: String,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    /// It has a `deletionTimestamp`: it is stopping (and may still answer, and count as ready, for a while).
    pub terminating: bool,
}

impl PrometheusPod {
    fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    /// `prometheus-x-0 (Running, ready, terminating)`.
    pub fn describe(&self) -> String {
        let mut state = vec![self.phase.clone()];
        state.push(if self.ready { "ready".into() } else { "not ready".into() });
        if self.terminating {
            state.push("terminating".into());
        }
        format!("{} ({})", self.name, state.join(", "))
    }
}

/// Why a wait for the pods ended without what it waited for.
enum PodWaitEnd {
    /// Time ran out; the pods listed last.
    TimedOut(String),
    /// The pods could not be read.
    Failed(ClusterError),
}

/// One status condition of the Prometheus resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `True`, `False` or `Degraded`.
    pub status: String,
    /// The generation it was computed for.
    pub observed_generation: Option<i64>,
    /// Why, in a word.
    pub reason: Option<String>,
    /// Why, in a sentence.
    pub message: Option<String>,
}

/// What the Prometheus resource says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrometheusInfo {
    /// Its name (also the name of its Service).
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.replicas` (the chart sets 0 outside runs).
    pub replicas: i64,
    /// `status.availableReplicas`.
    pub available_replicas: i64,
    /// The Prometheus version (`spec.version`, else the image tag).
    pub version: Option<String>,
    /// The chart version, from the `chart` label (`kube-prometheus-stack-88.5.3` gives `88.5.3`).
    pub chart_version: Option<String>,
    /// `spec.externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// The `Available` condition.
    pub available: Option<Condition>,
    /// The `Reconciled` condition.
    pub reconciled: Option<Condition>,
}

impl PrometheusInfo {
    fn from_object(object: &DynamicObject) -> Self {
        let data = &object.data;
        let spec = &data["spec"];
        let status = &data["status"];
        let condition = |kind: &str| {
            status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind).map(|c| Condition {
                status: c["status"].as_str().unwrap_or("Unknown").to_owned(),
                observed_generation: c["observedGeneration"].as_i64(),
                reason: c["reason"].as_str().map(str::to_owned),
                message: c["message"].as_str().map(str::to_owned),
            })
        };
        let version = spec["version"]
            .as_str()
            .filter(|v| !v.is_empty())
            .or_else(|| spec["image"].as_str().and_then(|image| image.rsplit_once(':').map(|(_, tag)| tag)))
            .map(str::to_owned);
        let chart_version = object
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get("chart"))
            .and_then(|chart| chart.strip_prefix("kube-prometheus-stack-"))
            .map(str::to_owned);
        let external_labels = spec["externalLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect();
        Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            generation: object.metadata.generation.unwrap_or(0),
            replicas: spec["replicas"].as_i64().unwrap_or(1),
            available_replicas: status["availableReplicas"].as_i64().unwrap_or(0),
            version,
            chart_version,
            external_labels,
            available: condition("Available"),
            reconciled: condition("Reconciled"),
        }
    }

    /// Whether `Available` and `Reconciled` are both `True` for `generation` (a condition computed for an older
    /// generation does not count).
    pub fn is_ready_at(&self, generation: i64) -> bool {
        let current = |c: &Option<Condition>| {
            // At or after the patched generation: a later write to the spec (GitOps, Helm) bumps the generation again,
            // and the operator then stamps the newer one.
            c.as_ref().is_some_and(|c| c.status == "True" && c.observed_generation.is_some_and(|g| g >= generation))
        };
        current(&self.available) && current(&self.reconciled)
    }

    /// One line for progress reports, e.g. `Prometheus: Available=False (0/1 replicas), Reconciled=True`.
    pub fn summary(&self, generation: i64) -> String {
        let show = |name: &str, c: &Option<Condition>| match c {
            None => format!("{name}=Unknown"),
            Some(c) => {
                let mut text = format!("{name}={}", c.status);
                if c.observed_generation.is_some_and(|g| g < generation) {
                    text.push_str(" (not yet for this change)");
                } else if c.status != "True"
                    && let Some(reason) = c.reason.as_deref().or(c.message.as_deref())
                {
                    text.push_str(&format!(" ({reason})"));
                }
                text
            }
        };
        format!(
            "Prometheus: {} ({}/{} replicas), {}",
            show("Available", &self.available),
            self.available_replicas,
            self.replicas,
            show("Reconciled", &self.reconciled)
        )
    }
}

fn prometheus_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "Prometheus"),
        "prometheuses",
    )
}

impl KubeCluster {
    fn prometheus_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.names.namespace, &prometheus_resource())
    }

    fn no_prometheus(&self) -> ClusterError {
        ClusterError::NoPrometheus { release: self.names.release.clone(), namespace: self.names.namespace.clone() }
    }

    /// Finds the release's Prometheus resource: labelled `app=kube-prometheus-stack-prometheus` and
    /// `release=<release>` in the namespace. [`ClusterError::NoPrometheus`] when there is none (or the CRD is not
    /// installed).
    pub async fn find_prometheus(&self) -> Result<PrometheusInfo, ClusterError> {
        let selector = format!("app={PROMETHEUS_APP_LABEL},release={}", self.names.release);
        let list = match self.prometheus_api().list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            // No Prometheus CRD: the chart was never installed.
            Err(err) if api_code(&err) == Some(404) => return Err(self.no_prometheus()),
            Err(source) => {
                return Err(ClusterError::api(
                    format!("list Prometheus resources in namespace {}", self.names.namespace),
                    source,
                ));
            }
        };
        let mut items = list.items;
        items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if items.len() > 1 {
            tracing::warn!(count = items.len(), selector, "several Prometheus resources match; using the first");
        }
        let object = items.into_iter().next().ok_or_else(|| self.no_prometheus())?;
        let info = PrometheusInfo::from_object(&object);
        *self.prometheus_name.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.name.clone());
        Ok(info)
    }

    pub(crate) async fn prometheus_name(&self) -> Result<String, ClusterError> {
        let known = self.prometheus_name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match known {
            Some(name) => Ok(name),
            None => Ok(self.find_prometheus().await?.name),
        }
    }

    /// Sets `spec.replicas` and changes `spec.externalLabels` with one JSON merge patch: `add` sets labels, `remove`
    /// deletes them (as `null`). Labels not named are left as they are. Returns the resource after the patch (its
    /// `generation` is what [`KubeCluster::wait_ready`] waits for).
    pub async fn scale(
        &self,
        replicas: i64,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<PrometheusInfo, ClusterError> {
        let name = self.find_prometheus().await?.name;
        let patch = scale_patch(replicas, add, remove);
        tracing::debug!(%name, %patch, "patching Prometheus");
        let object = self
            .prometheus_api()
            .patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Merge(&patch))
            .await
            .map_err(|source| ClusterError::api(format!("patch Prometheus {}/{name}", self.names.namespace), source))?;
        Ok(PrometheusInfo::from_object(&object))
    }

    /// Waits until the Prometheus resource is `Available` and `Reconciled` at `generation`, polling, at most
    /// `timeout`; each poll's state goes to `progress`. [`ClusterError::NotReady`] on timeout, with the last state.
    pub async fn wait_ready(
        &self,
        generation: i64,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<PrometheusInfo, ClusterError> {
        let start = Instant::now();
        loop {
            let info = self.find_prometheus().await?;
            if info.is_ready_at(generation) {
                return Ok(info);
            }
            let detail = info.summary(generation);
            progress(&detail);
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(ClusterError::NotReady { timeout, detail });
            }
            tokio::time::sleep(self.poll_interval.min(timeout - elapsed)).await;
        }
    }

    /// The pods of the Prometheus resource, running or terminating (labels the operator sets on them:
    /// `app.kubernetes.io/name=prometheus`, `operator.prometheus.io/name=<resource>`).
    pub async fn prometheus_pods(&self) -> Result<Vec<PrometheusPod>, ClusterError> {
        let mut pods: Vec<PrometheusPod> =
            self.prometheus_pod_objects().await?.iter().map(PrometheusPod::from_pod).collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
    }

    /// The pods of the Prometheus resource as the API server returns them.
    pub(crate) async fn prometheus_pod_objects(&self) -> Result<Vec<Pod>, ClusterError> {
        let name = self.prometheus_name().await?;
        let selector = format!("app.kubernetes.io/name=prometheus,operator.prometheus.io/name={name}");
        let list = self.pod_api().list(&ListParams::default().labels(&selector)).await.map_err(|source| {
            ClusterError::api(format!("list the pods of Prometheus {}/{name}", self.names.namespace), source)
        })?;
        Ok(list.items)
    }

    /// Pods in the release's namespace.
    pub(crate) fn pod_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.names.namespace)
    }

    /// Waits until the Prometheus resource has no pod left (a scaled-down pod terminates for a while: it flushes
    /// its queue and stops), polling, at most `timeout`. [`ClusterError::PodsRemain`] on timeout, naming them.
    pub async fn wait_pods_gone(
        &self,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), ClusterError> {
        self.wait_for_pods(timeout, progress, Vec::is_empty, |listed| {
            format!("waiting for Prometheus' pod to be gone: {listed}")
        })
        .await
        .map_err(|end| match end {
            PodWaitEnd::TimedOut(listed) => ClusterError::PodsRemain {
                detail: format!("Prometheus' pod is still there after {}s: {listed}", timeout.as_secs()),
            },
            PodWaitEnd::Failed(err) => err,
        })
    }

    /// Waits until a pod of the Prometheus resource is ready and not terminating (the new one: a terminating pod may
    /// still count as ready for a while), polling, at most `timeout`. [`ClusterError::NotReady`] on timeout, with the
    /// pods seen last.
    pub async fn wait_for_a_ready_pod(
        &self,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), ClusterError> {
        let detail = |listed: &str| format!("Prometheus' pod: {}", if listed.is_empty() { "none yet" } else { listed });
        let ready = |pods: &Vec<PrometheusPod>| pods.iter().any(|p| p.ready && !p.terminating);
        self.wait_for_pods(timeout, progress, ready, detail).await.map_err(|end| match end {
            PodWaitEnd::TimedOut(listed) => ClusterError::NotReady { timeout, detail: detail(&listed) },
            PodWaitEnd::Failed(err) => err,
        })
    }

    /// Polls the Prometheus resource's pods until `done` holds of them, at most `timeout`, telling `progress` what
    /// `describe` makes of the pods listed.
    async fn wait_for_pods(
        &self,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
        done: impl Fn(&Vec<PrometheusPod>) -> bool,
        describe: impl Fn(&str) -> String,
    ) -> Result<(), PodWaitEnd> {
        let start = Instant::now();
        loop {
            let pods = self.prometheus_pods().await.map_err(PodWaitEnd::Failed)?;
            if done(&pods) {
                return Ok(());
            }
            let listed = pods.iter().map(PrometheusPod::describe).collect::<Vec<_>>().join(", ");
            progress(&describe(&listed));
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(PodWaitEnd::TimedOut(listed));
            }
            tokio::time::sleep(self.poll_interval.min(timeout - elapsed)).await;
        }
    }

    /// The API server path of `pod`'s `/metrics` through the pod proxy.
    pub fn metrics_path(&self, pod: &str) -> String {
        format!("/api/v1/namespaces/{}/pods/{pod}:{PROMETHEUS_POD_PORT}/proxy/metrics", self.names.namespace)
    }

    /// Prometheus' own `/metrics` text of its first pod, through the API server's pod proxy (for `cluster status`).
    pub async fn prometheus_metrics(&self) -> Result<String, ClusterError> {
        let pods = self.prometheus_pods().await?;
        let pod =
            pods.first().ok_or_else(|| ClusterError::PodsRemain { detail: "no Prometheus pod is running".into() })?;
        self.pod_metrics(&pod.name).await
    }

    /// The `/metrics` text of every Prometheus pod (each shard and replica has its own remote-write queue), by pod
    /// name; an error when there is no pod or one does not answer.
    pub async fn prometheus_metrics_per_pod(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let pods = self.prometheus_pods().await?;
        if pods.is_empty() {
            return Err(ClusterError::PodsRemain { detail: "no Prometheus pod is running".into() });
        }
        let mut texts = Vec::with_capacity(pods.len());
        for pod in pods {
            let text = self.pod_metrics(&pod.name).await?;
            texts.push((pod.name, text));
        }
        Ok(texts)
    }

    /// `pod`'s `/metrics` through the API server's pod proxy (no port-forward, works for an agent too). The pod
    /// proxy reaches the pod itself, ready or not, terminating or not, where the service proxy would pick any ready
    /// endpoint (none while the pod stops, a random one with several). Bounded to 15 s.
    pub async fn pod_metrics(&self, pod: &str) -> Result<String, ClusterError> {
        let path = self.metrics_path(pod);
        let request = http::Request::get(&path).body(Vec::new()).map_err(|e| ClusterError::Io {
            action: format!("build the request for {path}"),
            source: std::io::Error::other(e),
        })?;
        let context = || format!("read Prometheus' /metrics through the API server's pod proxy ({path})");
        match tokio::time::timeout(METRICS_TIMEOUT, self.client.request_text(request)).await {
            Ok(result) => result.map_err(|source| ClusterError::api(format!("{}; is it running?", context()), source)),
            Err(_) => Err(ClusterError::Io {
                action: context(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}s", METRICS_TIMEOUT.as_secs()),
                ),
            }),
        }
    }
}

/// The merge patch [`KubeCluster::scale`] sends.
pub(crate) fn scale_patch(replicas: i64, add: &BTreeMap<String, String>, remove: &[String]) -> Value {
    let mut labels = serde_json::Map::new();
    for key in remove {
        labels.insert(key.clone(), Value::Null);
    }
    for (key, value) in add {
        labels.insert(key.clone(), Value::String(value.clone()));
    }
    let mut spec = json!({ "replicas": replicas });
    if !labels.is_empty() {
        spec["externalLabels"] = Value::Object(labels);
    }
    json!({ "spec": spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(status: &str, generation: i64) -> Option<Condition> {
        Some(Condition { status: status.into(), observed_generation: Some(generation), reason: None, message: None })
    }

    #[test]
    fn readiness_counts_conditions_at_or_after_the_patched_generation() {
        let at = |available: i64, reconciled: i64| PrometheusInfo {
            name: "greenflow-kube-prometheus-prometheus".into(),
            generation: 7,
            replicas: 1,
            available_replicas: 1,
            version: None,
            chart_version: None,
            external_labels: BTreeMap::new(),
            available: condition("True", available),
            reconciled: condition("True", reconciled),
        };
        assert!(at(5, 5).is_ready_at(5));
        assert!(at(6, 7).is_ready_at(5), "a later write to the spec bumped the generation: still ready");
        assert!(!at(4, 5).is_ready_at(5), "Available from before the patch");
        let not_true = PrometheusInfo { available: condition("False", 5), ..at(5, 5) };
        assert!(!not_true.is_ready_at(5));
    }
}
