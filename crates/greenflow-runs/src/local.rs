//! The local stand-in cluster: node-exporter and a Prometheus in agent mode on this machine, remote-writing to the
//! sink with the same rendered settings the cluster's Prometheus gets.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use greenflow_config::{Secret, Settings};
use greenflow_render::{AgentConfigInput, QueueConfig, RemoteWriteTarget, ScrapeJob, render_agent_config};
use greenflow_sink::supervisor::{ProcessSpec, StartupFailure, Supervisor};
use greenflow_sink::versions::{self, Release};
use greenflow_sink::{Program, check_port_free, ensure_dir, write_private, write_public};

use crate::error::RunError;
use crate::record::RunId;
use crate::{EXPERIMENT_LABEL, RUN_LABEL};

/// How Prometheus' remote-write queue is flushed at shutdown: long enough to send a batch, short enough that
/// stopping never hangs for a minute (Prometheus' default).
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// The agent's copy of the writer's password, in the run's directory.
pub(crate) const PASSWORD_FILE: &str = "remote-write-password";

/// The configuration of a Prometheus that writes into the sink, as greenflow renders it everywhere (the local
/// stand-in cluster, `greenflow sink prometheus-config`): `scrape_jobs` every `local.scrape_interval`, every sample
/// sent with `labels` as external labels to `remote_write_url` with basic auth (the password read from
/// `password_file`) and the `remote_write` queue settings.
pub fn sink_agent_input(
    settings: &Settings,
    labels: &BTreeMap<String, String>,
    scrape_jobs: Vec<ScrapeJob>,
    remote_write_url: &str,
    username: &str,
    password_file: &str,
) -> AgentConfigInput {
    AgentConfigInput {
        scrape_interval: settings.config.local.scrape_interval,
        external_labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        scrape_jobs,
        remote_write: vec![RemoteWriteTarget {
            name: "greenflow-sink".into(),
            url: remote_write_url.to_owned(),
            username: username.to_owned(),
            password_file: password_file.to_owned(),
            proxy_url: settings.config.local.proxy_url.clone(),
        }],
        queue: QueueConfig::from(&settings.config.remote_write),
    }
}

/// Finds the stand-in cluster's programs (Prometheus and node-exporter) and checks their releases, writing and
/// starting nothing; returns what each reports, for the run record.
pub fn check_local_programs(settings: &Settings) -> Result<BTreeMap<String, String>, RunError> {
    let local = &settings.config.local;
    let mut versions = BTreeMap::new();
    for (key, program, configured) in [
        ("prometheus", Program::Prometheus, local.prometheus_binary.as_deref()),
        ("node-exporter", Program::NodeExporter, local.node_exporter_binary.as_deref()),
    ] {
        let binary = program.locate(configured, &settings.env)?;
        let release = versions::detect_supported(program, &binary)?;
        if release != Release::Unknown {
            versions.insert(key.to_owned(), release.describe());
        }
    }
    Ok(versions)
}

/// A local cluster with its files written, ready to start.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LocalClusterPlan {
    specs: Vec<ProcessSpec>,
    /// Its directory (configuration, WAL, logs, password file).
    pub dir: PathBuf,
    /// The agent's address (`127.0.0.1:PORT`).
    pub prometheus_listen: String,
    /// node-exporter's address.
    pub node_exporter_listen: String,
    /// The rendered `prometheus.yml`.
    pub prometheus_config: PathBuf,
    /// The agent's password file (mode 0600), removed when the cluster stops.
    pub password_file: PathBuf,
    /// Versions of the programs (`prometheus`, `node-exporter`).
    pub versions: BTreeMap<String, String>,
    /// The external labels every sample carries.
    pub labels: BTreeMap<String, String>,
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    supervisor: Supervisor,
    plan: LocalClusterPlan,
}

fn free_port() -> Result<u16, RunError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(RunError::NoFreePort)?;
    Ok(listener.local_addr().map_err(RunError::NoFreePort)?.port())
}

fn pick_port(configured: u16, key: &'static str) -> Result<u16, RunError> {
    if configured == 0 {
        free_port()
    } else {
        check_port_free(configured, key)?;
        Ok(configured)
    }
}

impl LocalCluster {
    /// Finds the binaries, picks ports, and writes the agent's configuration and password file for run `id` named
    /// `name` (the run and experiment labels).
    pub fn plan(
        settings: &Settings,
        id: &RunId,
        name: &str,
        remote_write_url: &str,
        username: &str,
        password: &Secret,
    ) -> Result<LocalClusterPlan, RunError> {
        let labels =
            BTreeMap::from([(RUN_LABEL.to_owned(), id.to_string()), (EXPERIMENT_LABEL.to_owned(), name.to_owned())]);
        Self::plan_with_labels(settings, id.as_str(), &labels, remote_write_url, username, password)
    }

    /// Like [`LocalCluster::plan`], with any external labels; files go under `local_cluster_dir/<dir_name>`.
    pub fn plan_with_labels(
        settings: &Settings,
        dir_name: &str,
        labels: &BTreeMap<String, String>,
        remote_write_url: &str,
        username: &str,
        password: &Secret,
    ) -> Result<LocalClusterPlan, RunError> {
        let local = &settings.config.local;
        let prometheus = Program::Prometheus.locate(local.prometheus_binary.as_deref(), &settings.env)?;
        let prometheus_release = versions::detect_supported(Program::Prometheus, &prometheus)?;
        let node_exporter = Program::NodeExporter.locate(local.node_exporter_binary.as_deref(), &settings.env)?;
        let node_exporter_release = versions::detect_supported(Program::NodeExporter, &node_exporter)?;
        let prometheus_port = pick_port(local.prometheus_port, "local.prometheus_port")?;
        let node_exporter_port = pick_port(local.node_exporter_port, "local.node_exporter_port")?;
        let dir = settings.paths.local_cluster_dir().join(dir_name);
        let logs = dir.join("logs");
        ensure_dir(&logs)?;
        let textfile_dir = dir.join("textfile");
        ensure_dir(&textfile_dir)?;
        let password_file = dir.join(PASSWORD_FILE);
        write_private(&password_file, password.expose())?;

        let labels = labels.clone();
        let prometheus_listen = format!("127.0.0.1:{prometheus_port}");
        let node_exporter_listen = format!("127.0.0.1:{node_exporter_port}");
        let config = render_agent_config(&sink_agent_input(
            settings,
            &labels,
            [
                ScrapeJob { name: "node-exporter".into(), target: node_exporter_listen.clone() },
                ScrapeJob { name: "prometheus".into(), target: prometheus_listen.clone() },
            ]
            .into_iter()
            .chain(
                settings
                    .config
                    .local
                    .scrape_targets
                    .iter()
                    .enumerate()
                    .map(|(i, target)| ScrapeJob { name: format!("experiment-{}", i + 1), target: target.clone() }),
            )
            .collect(),
            remote_write_url,
            username,
            &password_file.to_string_lossy(),
        ))?;
        let prometheus_config = dir.join("prometheus.yml");
        write_public(&prometheus_config, &config)?;

        let versions = [("prometheus", &prometheus_release), ("node-exporter", &node_exporter_release)]
            .into_iter()
            .filter(|(_, release)| **release != Release::Unknown)
            .map(|(key, release)| (key.to_owned(), release.describe()))
            .collect();
        let arg = |s: String| OsString::from(s);
        let specs = vec![
            ProcessSpec {
                name: "node-exporter".into(),
                program: node_exporter,
                args: vec![
                    arg(format!("--web.listen-address={node_exporter_listen}")),
                    // Experiments can drop `*.prom` files here to have their own figures scraped.
                    arg(format!("--collector.textfile.directory={}", textfile_dir.display())),
                ],
                env: Vec::new(),
                log_file: logs.join("node-exporter.log"),
                stop_grace: Duration::from_secs(5),
            },
            ProcessSpec {
                name: "prometheus-agent".into(),
                program: prometheus,
                args: vec![
                    arg(versions::prometheus_agent_flag(&prometheus_release).into()),
                    arg(format!("--config.file={}", prometheus_config.display())),
                    arg(format!("--storage.agent.path={}", dir.join("wal").display())),
                    arg(format!("--web.listen-address={prometheus_listen}")),
                    arg(format!("--storage.remote.flush-deadline={}s", FLUSH_DEADLINE.as_secs())),
                    // The scrape manager applies discovered targets on this tick (hidden flag, default 5s, in
                    // cmd/prometheus/main.go since 2.x): at 5 s the first scrape waits up to 5 s after start.
                    arg("--scrape.discovery-reload-interval=1s".into()),
                ],
                env: Vec::new(),
                log_file: logs.join("prometheus.log"),
                stop_grace: FLUSH_DEADLINE + Duration::from_secs(5),
            },
        ];
        Ok(LocalClusterPlan {
            specs,
            dir,
            prometheus_listen,
            node_exporter_listen,
            prometheus_config,
            password_file,
            versions,
            labels,
        })
    }

    /// Starts node-exporter and the agent.
    pub async fn start(plan: LocalClusterPlan) -> Result<Self, RunError> {
        let supervisor = Supervisor::start(plan.specs.clone()).await?;
        Ok(Self { supervisor, plan })
    }

    /// The plan it runs.
    pub fn plan_ref(&self) -> &LocalClusterPlan {
        &self.plan
    }

    /// The program that exited during start-up, if one did (it is not restarted).
    pub fn startup_failure(&self) -> Option<(String, StartupFailure)> {
        self.supervisor.startup_failure()
    }

    /// Ends the start-up: from now on a crash is restarted with backoff.
    pub fn mark_started(&self) {
        self.supervisor.mark_started();
    }

    /// The live state of each program.
    pub fn states(&self) -> Vec<greenflow_sink::supervisor::ProcessState> {
        self.supervisor.states()
    }

    /// Notified whenever a program starts, exits or is restarted.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.supervisor.changes()
    }

    /// Stops the agent (which flushes its queue for at most the flush deadline) and node-exporter, and removes the
    /// run's copy of the writer's password.
    pub async fn stop(self) {
        self.supervisor.stop().await;
        let _ = std::fs::remove_file(&self.plan.password_file);
    }
}
