//! The crate's one error type. Each message is one line that says what failed and what to check; the cause, when
//! there is one, is the `source`.

use std::path::PathBuf;
use std::time::Duration;

use greenflow_config::ConfigError;
use greenflow_render::RenderError;

/// Why a cluster operation failed.
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
    /// The sidecar route needs a Tailscale auth key.
    #[error(
        "cluster.reach `sidecar`: {problem}: create a reusable, ephemeral, pre-approved auth key tagged \
         tag:greenflow (Tailscale admin console, Settings > Keys), put it in .secrets.env as TS_AUTHKEY, and run \
         `greenflow cluster install` again; or choose another cluster.reach"
    )]
    NoAuthKey {
        /// What is wrong with it (never its value).
        problem: String,
    },
    /// The route (`cluster.reach`) does not fit the sink's address or lacks a setting.
    #[error("cluster.reach `{reach}`: {fix}")]
    Route {
        /// The route.
        reach: greenflow_config::Reach,
        /// What is wrong and how to fix it.
        fix: String,
    },
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// No kubeconfig (or no such context in it).
    #[error(
        "no usable Kubernetes configuration{}: check KUBECONFIG (or ~/.kube/config) and cluster.context in \
         greenflow.yaml",
        context.as_deref().map(|c| format!(" for context `{c}`")).unwrap_or_default()
    )]
    Kubeconfig {
        /// The context asked for, if any.
        context: Option<String>,
        /// What kube-rs said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {server}: check KUBECONFIG and the context (`kubectl config \
         current-context`, or cluster.context in greenflow.yaml), and that the cluster is up"
    )]
    Unreachable {
        /// The server URL from the kubeconfig.
        server: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The chart's Prometheus resource is not there.
    #[error("no Prometheus from release {release} in namespace {namespace}: run `greenflow cluster install`")]
    NoPrometheus {
        /// The Helm release looked for.
        release: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// Another holder has the experiment lock and it has not expired.
    #[error(
        "the experiment lock (Lease {lease}) is held by {holder} since {since}, until {expires} unless renewed; wait \
         for that run to end"
    )]
    LockHeld {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Who holds it.
        holder: String,
        /// When they took it (RFC 3339).
        since: String,
        /// When it expires if not renewed (RFC 3339).
        expires: String,
    },
    /// The lock was taken over by someone else while this run held it.
    #[error(
        "the experiment lock (Lease {lease}) is now held by {holder}: this run's lock expired (was greenflow \
         suspended?); check that run before going on"
    )]
    LockLost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The new holder.
        holder: String,
    },
    /// A Prometheus pod is still there (running or terminating) when none may be.
    #[error("{detail}")]
    PodsRemain {
        /// Which pods, in what state, and what to do.
        detail: String,
    },
    /// Prometheus did not become ready in time.
    #[error("Prometheus did not become ready within {}s: {detail}", timeout.as_secs())]
    NotReady {
        /// How long was waited.
        timeout: Duration,
        /// The last state seen.
        detail: String,
    },
    /// A Kubernetes API call failed.
    #[error("failed to {action}")]
    Api {
        /// What was being done, e.g. `patch Prometheus monitoring/x`.
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// `cluster.chart_repository` is a directory without the pinned chart's archive.
    #[error(
        "cluster.chart_repository: no {} in {}: save it with `helm pull kube-prometheus-stack --repo \
         https://prometheus-community.github.io/helm-charts --version {version} --destination {}`",
        archive.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), dir.display(), dir.display()
    )]
    ChartMissing {
        /// The archive looked for.
        archive: PathBuf,
        /// The pinned chart version.
        version: String,
        /// The configured directory.
        dir: PathBuf,
    },
    /// helm is not installed (or not where the configuration says).
    #[error("{}", helm_missing_message(configured.as_deref()))]
    HelmMissing {
        /// `cluster.helm_binary`, when set.
        configured: Option<PathBuf>,
    },
    /// A helm whose major version greenflow does not drive.
    #[error(
        "helm {found} (`{}`) is not supported: greenflow drives Helm 3 and Helm 4; install one of them or point \
         cluster.helm_binary at it",
        path.display()
    )]
    HelmVersion {
        /// What `helm version` said.
        found: String,
        /// The binary.
        path: PathBuf,
    },
    /// A helm command failed.
    #[error("`{command}` failed: {stderr}")]
    Helm {
        /// The command line.
        command: String,
        /// The last lines of its error output.
        stderr: String,
    },
    /// A local file or process operation failed.
    #[error("failed to {action}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn helm_missing_message(configured: Option<&std::path::Path>) -> String {
    match configured {
        Some(path) => format!(
            "cluster.helm_binary is {}, which is not an executable file: fix the path or remove the key to use helm \
             from PATH",
            path.display()
        ),
        None => "helm not found on PATH: install it (scripts/install-deps, `nix develop`, or your package manager) \
                 or set cluster.helm_binary in greenflow.yaml"
            .to_owned(),
    }
}

impl ClusterError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Api { action: action.into(), source }
    }
}

/// The HTTP status code of an API error, if it is one.
pub(crate) fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
