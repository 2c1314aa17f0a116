//! The `kube` back-end: a Kubernetes cluster with greenflow's kube-prometheus-stack release, through
//! [`greenflow_cluster::KubeCluster`] (merge-patched Prometheus resource, Lease lock, `/metrics` through the API
//! server's service proxy).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use greenflow_cluster::{ClusterError, KubeCluster};

use crate::backend::{BackendError, BackendInfo, BackendKind, ClusterBackend, Progress};
use crate::record::RunId;
use crate::{EXPERIMENT_LABEL, RUN_LABEL};

/// The real cluster behind the [`ClusterBackend`] trait.
#[derive(Debug)]
pub struct KubeBackend {
    cluster: KubeCluster,
    holder: Option<String>,
    /// External label keys this run added (removed again at scale-down, with the run and experiment labels).
    added_labels: BTreeSet<String>,
    replicas: i64,
}

impl KubeBackend {
    /// A back-end on `cluster` (from [`greenflow_cluster::connect`], or a fake in tests). Scale-up runs one replica.
    pub fn new(cluster: KubeCluster) -> Self {
        Self { cluster, holder: None, added_labels: BTreeSet::new(), replicas: 1 }
    }
}

/// Turns a cluster error into the lifecycle's: the lock and readiness kinds keep their meaning, the rest keep their
/// whole message (with causes) on one line.
pub fn backend_error(err: ClusterError) -> BackendError {
    match err {
        ClusterError::LockHeld { holder, since, expires, .. } => BackendError::LockHeld {
            holder,
            since,
            expires: format!(" (or wait until {expires}, when an unrenewed lock may be taken over)"),
        },
        ClusterError::NotReady { timeout, detail } => BackendError::NotReady { timeout, detail },
        other => BackendError::message(greenflow_cluster::one_line(&other)),
    }
}

impl ClusterBackend for KubeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kube
    }

    async fn preflight(&mut self) -> Result<BackendInfo, BackendError> {
        let kubernetes = self.cluster.kubernetes_version().await.map_err(backend_error)?;
        let prometheus = self.cluster.find_prometheus().await.map_err(backend_error)?;
        let mut versions = BTreeMap::from([("kubernetes".to_owned(), kubernetes)]);
        if let Some(version) = &prometheus.version {
            versions.insert("prometheus".into(), version.clone());
        }
        if let Some(chart) = &prometheus.chart_version {
            versions.insert("chart".into(), chart.clone());
        }
        let description = format!(
            "Prometheus {}/{} ({}) on {}",
            self.cluster.names().namespace,
            prometheus.name,
            prometheus.version.as_deref().unwrap_or("unknown version"),
            self.cluster.server()
        );
        Ok(BackendInfo { description, versions })
    }

    async fn acquire_lock(&mut self, _run: &RunId, holder: &str) -> Result<(), BackendError> {
        self.cluster.acquire_lease(holder).await.map_err(backend_error)?;
        self.holder = Some(holder.to_owned());
        Ok(())
    }

    fn renew_interval(&self) -> Duration {
        self.cluster.lease_duration() / 3
    }

    async fn renew_lock(&mut self) -> Result<(), BackendError> {
        let Some(holder) = &self.holder else {
            return Err(BackendError::message("internal: renew_lock called before acquire_lock"));
        };
        self.cluster.renew_lease(holder).await.map_err(backend_error)
    }

    async fn release_lock(&mut self) -> Result<(), BackendError> {
        let Some(holder) = self.holder.take() else { return Ok(()) };
        self.cluster.release_lease(&holder).await.map_err(backend_error)
    }

    async fn scale_up(
        &mut self,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<(), BackendError> {
        self.added_labels.extend(labels.keys().cloned());
        let patched = self.cluster.scale(self.replicas, labels, &[]).await.map_err(backend_error)?;
        self.cluster.wait_ready(patched.generation, timeout, progress).await.map_err(backend_error)?;
        Ok(())
    }

    async fn prometheus_metrics(&mut self) -> Result<String, BackendError> {
        self.cluster.prometheus_metrics().await.map_err(backend_error)
    }

    fn remote_name(&self) -> &str {
        greenflow_cluster::REMOTE_NAME
    }

    async fn resume(&mut self, _run: &RunId) -> Result<bool, BackendError> {
        // Prometheus may still hold the run's queue; the drain finds out (an empty queue drains at once).
        Ok(true)
    }

    async fn scale_down(&mut self) -> Result<(), BackendError> {
        let mut remove: BTreeSet<String> = [RUN_LABEL.to_owned(), EXPERIMENT_LABEL.to_owned()].into();
        remove.extend(self.added_labels.iter().cloned());
        // The chart's own label stays whatever the lifecycle passed.
        remove.remove(greenflow_cluster::DEPLOYMENT_LABEL);
        let remove: Vec<String> = remove.into_iter().collect();
        self.cluster.scale(0, &BTreeMap::new(), &remove).await.map_err(backend_error)?;
        self.added_labels.clear();
        Ok(())
    }
}
