//! The handle on one cluster: an injected client and the names greenflow uses in it.

use std::sync::Mutex;
use std::time::Duration;

use greenflow_config::{ClusterConfig, Settings};
use kube::Client;
use kube::config::KubeConfigOptions;

use crate::error::ClusterError;

/// The names greenflow uses in the cluster (all in one namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNames {
    /// The namespace of the release, the Secret and the Lease.
    pub namespace: String,
    /// The Helm release name (the Prometheus resource carries it as the `release` label).
    pub release: String,
    /// The Secret holding the remote-write `username` and `password`.
    pub remote_write_secret: String,
    /// The Lease that is the experiment lock.
    pub lease_name: String,
}

impl ClusterNames {
    /// The names from the `cluster` section of the configuration.
    pub fn from_config(config: &ClusterConfig) -> Self {
        Self {
            namespace: config.namespace.clone(),
            release: config.release.clone(),
            remote_write_secret: config.remote_write_secret.clone(),
            lease_name: config.lease_name.clone(),
        }
    }
}

/// A Kubernetes cluster with (or about to get) greenflow's kube-prometheus-stack release.
///
/// Built from an injected [`kube::Client`] ([`KubeCluster::new`]; tests pass one backed by
/// `testing::FakeApiServer` with the `testing` feature), or from the kubeconfig with [`connect`]. Nothing is
/// sent to the API server until a method is called.
pub struct KubeCluster {
    pub(crate) client: Client,
    pub(crate) names: ClusterNames,
    pub(crate) server: String,
    pub(crate) context: Option<String>,
    pub(crate) poll_interval: Duration,
    pub(crate) lease_duration: Duration,
    /// The Prometheus resource's name once found (it is also the name of its Service).
    pub(crate) prometheus_name: Mutex<Option<String>>,
    /// The other holder's Lease record as this process last saw it, and when it first saw it unchanged: expiry is
    /// judged on this machine's clock only (client-go's leader election does the same).
    pub(crate) observed_lease: Mutex<Option<(String, std::time::Instant)>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster").field("names", &self.names).field("server", &self.server).finish_non_exhaustive()
    }
}

/// How long the experiment lock lives without renewal.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(60);

impl KubeCluster {
    /// A cluster reached through `client`. `server` names it in error messages (the API server URL).
    pub fn new(client: Client, names: ClusterNames, server: impl Into<String>) -> Self {
        Self {
            client,
            names,
            server: server.into(),
            context: None,
            poll_interval: Duration::from_secs(2),
            lease_duration: DEFAULT_LEASE_DURATION,
            prometheus_name: Mutex::new(None),
            observed_lease: Mutex::new(None),
        }
    }

    /// Sets how often waits poll the API server (default 2 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets how long the experiment lock lives without renewal (default 60 s; renew every third of it).
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// Records the kubeconfig context (passed on to helm as `--kube-context`).
    pub fn with_context(mut self, context: Option<String>) -> Self {
        self.context = context;
        self
    }

    /// The names used in the cluster.
    pub fn names(&self) -> &ClusterNames {
        &self.names
    }

    /// The API server URL (for messages).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How long the experiment lock lives without renewal.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Asks the API server for its version: the reachability check. Returns the `gitVersion` (e.g. `v1.33.1`).
    pub async fn kubernetes_version(&self) -> Result<String, ClusterError> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|source| ClusterError::Unreachable { server: self.server.clone(), source })?;
        Ok(info.git_version)
    }
}

/// Builds a [`KubeCluster`] from the kubeconfig: `cluster.context` when set, else `KUBECONFIG` / `~/.kube/config`'s
/// current context, else the in-cluster service account. Nothing is sent to the API server yet (call
/// [`KubeCluster::kubernetes_version`] to check that it answers).
pub async fn connect(settings: &Settings) -> Result<KubeCluster, ClusterError> {
    let cluster = &settings.config.cluster;
    let context = cluster.context.clone();
    let mut config = match &context {
        Some(name) => {
            let options = KubeConfigOptions { context: Some(name.clone()), ..Default::default() };
            kube::Config::from_kubeconfig(&options).await.map_err(|e| kubeconfig_error(&context, e))?
        }
        None => kube::Config::infer().await.map_err(|e| kubeconfig_error(&context, e))?,
    };
    let server = config.cluster_url.to_string();
    // Every call has a bound: kube's client waits 295 s for an answer by default.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
    let client =
        Client::try_from(config).map_err(|source| ClusterError::Unreachable { server: server.clone(), source })?;
    Ok(KubeCluster::new(client, ClusterNames::from_config(cluster), server).with_context(context))
}

fn kubeconfig_error(context: &Option<String>, err: impl std::error::Error + Send + Sync + 'static) -> ClusterError {
    ClusterError::Kubeconfig { context: context.clone(), source: Box::new(err) }
}
