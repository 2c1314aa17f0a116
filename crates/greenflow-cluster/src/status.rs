//! `greenflow cluster status`: the release, the Prometheus resource, its `/metrics` and the lock, each read on its
//! own so that one missing part does not hide the others.

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::error::ClusterError;
use crate::kube_cluster::KubeCluster;
use crate::lease::LeaseInfo;
use crate::prometheus::PrometheusInfo;

/// The Helm release, read from helm's own release Secrets (labels `owner=helm`, `name=<release>`), so no helm is
/// needed to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseInfo {
    /// The revision number.
    pub revision: u32,
    /// `deployed`, `failed`, `pending-upgrade`, ...
    pub status: String,
}

/// Everything `cluster status` shows. Parts that could not be read hold the one-line reason instead.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The API server URL.
    pub server: String,
    /// The namespace looked in.
    pub namespace: String,
    /// The Kubernetes version.
    pub kubernetes_version: String,
    /// The newest revision of the release, if installed.
    pub release: Result<Option<ReleaseInfo>, String>,
    /// The Prometheus resource.
    pub prometheus: Result<PrometheusInfo, String>,
    /// Prometheus' `/metrics` text, read only when it has replicas (skipped: `None`).
    #[serde(skip)]
    pub metrics: Option<Result<String, String>>,
    /// The experiment lock, if the Lease exists.
    pub lock: Result<Option<LeaseInfo>, String>,
}

impl KubeCluster {
    /// The newest revision of the release, from helm's release Secrets.
    pub async fn release_info(&self) -> Result<Option<ReleaseInfo>, ClusterError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), &self.names.namespace);
        let selector = format!("owner=helm,name={}", self.names.release);
        let list = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ClusterError::api(format!("list helm's release Secrets in {}", self.names.namespace), e))?;
        Ok(list
            .items
            .iter()
            .filter_map(|secret| {
                let labels = secret.metadata.labels.as_ref()?;
                Some(ReleaseInfo {
                    revision: labels.get("version")?.parse().ok()?,
                    status: labels.get("status").cloned().unwrap_or_else(|| "unknown".into()),
                })
            })
            .max_by_key(|release| release.revision))
    }

    /// Reads the cluster's state. Fails only when the API server does not answer.
    pub async fn status(&self) -> Result<ClusterStatus, ClusterError> {
        let kubernetes_version = self.kubernetes_version().await?;
        let release = self.release_info().await.map_err(|e| one_line(&e));
        let prometheus = self.find_prometheus().await.map_err(|e| one_line(&e));
        let metrics = match &prometheus {
            Ok(info) if info.replicas > 0 && info.available_replicas > 0 => {
                Some(self.prometheus_metrics().await.map_err(|e| one_line(&e)))
            }
            _ => None,
        };
        let lock = self.lease_info().await.map_err(|e| one_line(&e));
        Ok(ClusterStatus {
            server: self.server.clone(),
            namespace: self.names.namespace.clone(),
            kubernetes_version,
            release,
            prometheus,
            metrics,
            lock,
        })
    }
}

/// An error and its causes on one line.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
