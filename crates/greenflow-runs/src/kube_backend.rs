//! The `kube` back-end: a Kubernetes cluster with greenflow's kube-prometheus-stack release, through
//! [`greenflow_cluster::KubeCluster`] (merge-patched Prometheus resource, Lease lock renewed on a timer, `/metrics`
//! through the API server's pod proxy).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenflow_cluster::{ClusterError, KubeCluster};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{BackendError, BackendInfo, BackendKind, ClusterBackend, Progress};
use crate::record::RunId;
use crate::{EXPERIMENT_LABEL, RUN_LABEL};

/// How long a scale-down waits for the pod to be gone (it flushes an already drained queue and stops), and a
/// scale-up for the previous run's pod to be gone.
const POD_GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the renewal timer knows about the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LockState {
    /// Renewed on time.
    Held,
    /// The last renewals failed (the API server does not answer, say): the lock lapses if this lasts.
    Failing(String),
    /// Someone else holds it now.
    Lost(String),
}

/// The task that renews the Lease every third of its duration, whatever the run is doing.
#[derive(Debug)]
struct Renewer {
    task: JoinHandle<()>,
    state: watch::Receiver<LockState>,
}

impl Renewer {
    fn start(cluster: Arc<KubeCluster>, holder: String) -> Self {
        let (tx, state) = watch::channel(LockState::Held);
        let interval = cluster.lease_duration() / 3;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let renewed = tokio::time::timeout(interval, cluster.renew_lease(&holder)).await;
                let next = match renewed {
                    Ok(Ok(())) => LockState::Held,
                    Ok(Err(ClusterError::LockLost { holder: other, .. })) => LockState::Lost(other),
                    Ok(Err(other)) => LockState::Failing(greenflow_cluster::one_line(&other)),
                    Err(_) => LockState::Failing(format!("no answer within {}s", interval.as_secs())),
                };
                let lost = matches!(next, LockState::Lost(_));
                tx.send_replace(next);
                if lost {
                    return;
                }
            }
        });
        Self { task, state }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real cluster behind the [`ClusterBackend`] trait.
#[derive(Debug)]
pub struct KubeBackend {
    cluster: Arc<KubeCluster>,
    holder: Option<String>,
    renewer: Option<Renewer>,
    /// External label keys this run added (removed again at scale-down, with the run and experiment labels).
    added_labels: BTreeSet<String>,
    /// A scale-up patch was sent (or a run left running was taken over): scale-down is ours to do.
    changed: bool,
    replicas: i64,
    pod_gone_timeout: Duration,
}

impl KubeBackend {
    /// A back-end on `cluster` (from [`greenflow_cluster::connect`], or a fake in tests). Scale-up runs one replica.
    pub fn new(cluster: KubeCluster) -> Self {
        Self {
            cluster: Arc::new(cluster),
            holder: None,
            renewer: None,
            added_labels: BTreeSet::new(),
            changed: false,
            replicas: 1,
            pod_gone_timeout: POD_GONE_TIMEOUT,
        }
    }

    /// Sets how long scale-up and scale-down wait for a pod to be gone (default 120 s).
    pub fn with_pod_gone_timeout(mut self, timeout: Duration) -> Self {
        self.pod_gone_timeout = timeout;
        self
    }

    /// Refuses to start on a Prometheus that already runs; waits (at most `timeout`) for the previous run's pod to
    /// be gone. A terminating pod still answers and still counts as available, so readiness read while it lives
    /// would be its, not the new pod's.
    async fn wait_for_a_stopped_prometheus(
        &self,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<(), BackendError> {
        let info = self.cluster.find_prometheus().await.map_err(backend_error)?;
        if info.replicas > 0 {
            return Err(BackendError::message(format!(
                "Prometheus {}/{} already runs ({} replica(s)): a run may have left it running (`greenflow runs \
                 recover` finishes such a run and scales it down); greenflow does not start a run on a running \
                 Prometheus, whose queue and labels another run owns",
                self.cluster.names().namespace,
                info.name,
                info.replicas
            )));
        }
        let pods = self.cluster.prometheus_pods().await.map_err(backend_error)?;
        if pods.is_empty() {
            return Ok(());
        }
        progress("the previous run's Prometheus pod is still stopping");
        self.cluster.wait_pods_gone(timeout, progress).await.map_err(|e| match e {
            ClusterError::PodsRemain { detail } => BackendError::message(format!(
                "{detail}; greenflow starts a run only once the previous Prometheus is gone (try again later, or \
                 `kubectl -n {} delete pod --wait` it)",
                self.cluster.names().namespace
            )),
            other => backend_error(other),
        })
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
        ClusterError::LockLost { holder, .. } => BackendError::LockLost { holder },
        ClusterError::NotReady { timeout, detail } => BackendError::NotReady { timeout, detail },
        other => BackendError::message(greenflow_cluster::one_line(&other)),
    }
}

impl ClusterBackend for KubeBackend {
    async fn diagnose_route(&mut self) -> Option<String> {
        match self.cluster.diagnose_route().await {
            Ok(cause) => cause,
            Err(err) => {
                tracing::debug!(error = %err, "no diagnosis of the route");
                None
            }
        }
    }

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

    async fn acquire_lock(&mut self, _run: &RunId, holder: &str, progress: Progress<'_>) -> Result<(), BackendError> {
        // Known before the wait: a stop during it releases a Lease that was created just before.
        self.holder = Some(holder.to_owned());
        self.cluster.acquire_lease_waiting(holder, progress).await.map_err(backend_error)?;
        self.renewer = Some(Renewer::start(Arc::clone(&self.cluster), holder.to_owned()));
        Ok(())
    }

    fn renew_interval(&self) -> Duration {
        // The timer renews; the lifecycle only looks at what it found.
        Duration::from_secs(1)
    }

    async fn renew_lock(&mut self) -> Result<(), BackendError> {
        let Some(renewer) = &self.renewer else {
            return Err(BackendError::message("internal: renew_lock called before acquire_lock"));
        };
        let state = renewer.state.borrow().clone();
        match state {
            LockState::Held => Ok(()),
            LockState::Failing(why) => Err(BackendError::message(format!("cannot renew the experiment lock: {why}"))),
            LockState::Lost(holder) => Err(BackendError::LockLost { holder }),
        }
    }

    async fn release_lock(&mut self) -> Result<(), BackendError> {
        let lost = self.renewer.take().is_some_and(|r| matches!(*r.state.borrow(), LockState::Lost(_)));
        let Some(holder) = self.holder.take() else { return Ok(()) };
        if lost {
            // Someone else's now: nothing of ours to release.
            return Ok(());
        }
        self.cluster.release_lease(&holder).await.map_err(backend_error)
    }

    async fn scale_up(
        &mut self,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<(), BackendError> {
        let deadline = Instant::now() + timeout;
        self.wait_for_a_stopped_prometheus(self.pod_gone_timeout.min(timeout), progress).await?;
        self.added_labels.extend(labels.keys().cloned());
        // Set before the patch: one whose answer was lost may still have been applied.
        self.changed = true;
        let patched = self.cluster.scale(self.replicas, labels, &[]).await.map_err(backend_error)?;
        let left = deadline.saturating_duration_since(Instant::now());
        self.cluster.wait_ready(patched.generation, left, progress).await.map_err(backend_error)?;
        let left = deadline.saturating_duration_since(Instant::now());
        self.cluster.wait_for_a_ready_pod(left, progress).await.map_err(|e| match e {
            ClusterError::NotReady { detail, .. } => BackendError::NotReady { timeout, detail },
            other => backend_error(other),
        })
    }

    async fn prometheus_metrics(&mut self) -> Result<Vec<String>, BackendError> {
        let texts = self.cluster.prometheus_metrics_per_pod().await.map_err(backend_error)?;
        Ok(texts.into_iter().map(|(_, text)| text).collect())
    }

    fn remote_name(&self) -> &str {
        greenflow_cluster::REMOTE_NAME
    }

    fn changed_prometheus(&self) -> bool {
        self.changed
    }

    async fn resume(&mut self, _run: &RunId) -> Result<bool, BackendError> {
        // Prometheus may still hold the run's queue; the drain finds out (an empty queue drains at once).
        self.changed = true;
        Ok(true)
    }

    async fn scale_down(&mut self, progress: Progress<'_>) -> Result<(), BackendError> {
        let mut remove: BTreeSet<String> = [RUN_LABEL.to_owned(), EXPERIMENT_LABEL.to_owned()].into();
        remove.extend(self.added_labels.iter().cloned());
        // The chart's own label stays whatever the lifecycle passed.
        remove.remove(greenflow_cluster::DEPLOYMENT_LABEL);
        let remove: Vec<String> = remove.into_iter().collect();
        self.cluster.scale(0, &BTreeMap::new(), &remove).await.map_err(backend_error)?;
        self.added_labels.clear();
        self.cluster.wait_pods_gone(self.pod_gone_timeout, progress).await.map_err(backend_error)
    }
}
