//! The cluster back-end trait: what the run lifecycle needs from a cluster, written once for the real cluster
//! (`kube`) and for the stand-in on this machine (`local`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::record::RunId;

/// Which back-end a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// A Kubernetes cluster with kube-prometheus-stack, through kube-rs.
    Kube,
    /// node-exporter and a Prometheus agent on this machine.
    Local,
}

impl BackendKind {
    /// The name used on the command line and in run records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kube => "kube",
            Self::Local => "local",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a back-end found in its preflight.
#[derive(Debug, Clone, Default)]
pub struct BackendInfo {
    /// One line for the user, e.g. `Prometheus monitoring/greenflow-kube-prometheus-prometheus (v3.7.1)`.
    pub description: String,
    /// Versions worth recording (`prometheus`, `kubernetes`, `chart`, ...).
    pub versions: BTreeMap<String, String>,
}

/// Why a back-end step failed. The lifecycle treats [`BackendError::LockHeld`] and [`BackendError::NotReady`]
/// specially; everything else is reported as it is.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Another run holds the experiment lock.
    #[error(
        "another run holds the experiment lock: {holder} (since {since}); wait for it to end, or if its greenflow \
         died, run `greenflow runs recover`{expires}"
    )]
    LockHeld {
        /// Who holds it (run id and host).
        holder: String,
        /// Since when (RFC 3339).
        since: String,
        /// When it may be taken over, as text appended to the message (may be empty).
        expires: String,
    },
    /// The lock was taken by someone else while this run held it: the run stops, and leaves Prometheus to them.
    #[error(
        "lost the experiment lock to {holder}: it lapsed while this run held it (renewals failed for a whole lease \
         duration); this run stopped and left Prometheus to its new holder"
    )]
    LockLost {
        /// The new holder.
        holder: String,
    },
    /// Prometheus did not become ready in time.
    #[error("Prometheus did not become ready within {}: {detail}", humantime_secs(*timeout))]
    NotReady {
        /// How long was waited.
        timeout: Duration,
        /// The last state seen.
        detail: String,
    },
    /// Anything else, with its context.
    #[error("{context}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl BackendError {
    /// An error with context and a cause.
    pub fn other(context: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Other { context: context.into(), source: Some(source.into()) }
    }

    /// An error that is its own explanation.
    pub fn message(context: impl Into<String>) -> Self {
        Self::Other { context: context.into(), source: None }
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Progress reports from a back-end's long waits (one line each, e.g. `Prometheus: 0/1 available`).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// A cluster whose Prometheus the run lifecycle scales up and down.
///
/// Every method is called from one task, in this order: [`preflight`](Self::preflight),
/// [`acquire_lock`](Self::acquire_lock), [`scale_up`](Self::scale_up), then
/// [`prometheus_metrics`](Self::prometheus_metrics) and [`renew_lock`](Self::renew_lock) while the run lives and
/// drains, [`scale_down`](Self::scale_down), [`release_lock`](Self::release_lock). `scale_down` (when
/// [`changed_prometheus`](Self::changed_prometheus)) and `release_lock` are also called after a failed `scale_up`.
#[allow(async_fn_in_trait)] // used generically from one task; no Send bound needed
pub trait ClusterBackend {
    /// Which back-end this is.
    fn kind(&self) -> BackendKind;

    /// Checks that the cluster can run an experiment, changing nothing: reachable, chart installed, Prometheus
    /// resource present.
    async fn preflight(&mut self) -> Result<BackendInfo, BackendError>;

    /// Takes the experiment lock for `run`, held by `holder` (run id and host), and keeps it alive from then on,
    /// whatever the run waits for, until [`release_lock`](Self::release_lock). Fails with
    /// [`BackendError::LockHeld`] when another live run holds it; a lapsed lock is taken over (which may take a
    /// while to establish: `progress` hears it).
    async fn acquire_lock(&mut self, run: &RunId, holder: &str, progress: Progress<'_>) -> Result<(), BackendError>;

    /// How often [`renew_lock`](Self::renew_lock) should be called.
    fn renew_interval(&self) -> Duration;

    /// Says whether the lock is still held: [`BackendError::LockLost`] once someone else took it (the run must
    /// stop), another error while renewals fail.
    async fn renew_lock(&mut self) -> Result<(), BackendError>;

    /// Releases the lock (no error when it is not held).
    async fn release_lock(&mut self) -> Result<(), BackendError>;

    /// Starts Prometheus with these external labels added and waits until it runs, at most `timeout`.
    async fn scale_up(
        &mut self,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<(), BackendError>;

    /// The `/metrics` text of each Prometheus (pod) that writes to the sink: each has its own queue, and the run is
    /// drained only when every one is.
    async fn prometheus_metrics(&mut self) -> Result<Vec<String>, BackendError>;

    /// The `remote_name` of the queue that writes to the sink.
    fn remote_name(&self) -> &str;

    /// For `runs recover`: finds the Prometheus that run `run` left running (its greenflow died, or its drain timed
    /// out) and whether there is a queue to drain.
    async fn resume(&mut self, run: &RunId) -> Result<bool, BackendError>;

    /// Stops Prometheus and removes the run's external labels, and waits until its pod is gone. Safe to call when it
    /// is not running.
    async fn scale_down(&mut self, progress: Progress<'_>) -> Result<(), BackendError>;

    /// Whether this run has changed Prometheus: a scale-up was sent, or [`resume`](Self::resume) took over a run
    /// left running. When it has not (a scale-up refused because another run's Prometheus already runs, say),
    /// the lifecycle leaves Prometheus alone instead of scaling down what is not its own.
    fn changed_prometheus(&self) -> bool {
        true
    }

    /// The likely cause when Prometheus does not get ready or its samples do not arrive (the route's sidecar not
    /// joined, its auth key refused, the proxy or TLS failing), from what the back-end can see. None: nothing
    /// points at one.
    async fn diagnose_route(&mut self) -> Option<String> {
        None
    }
}
