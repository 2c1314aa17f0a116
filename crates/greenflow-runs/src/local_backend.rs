//! The `local` back-end: the stand-in cluster on this machine (node-exporter and a Prometheus agent) behind the same
//! trait as the real cluster, with a lock file in place of the Lease. The stand-in runs in a background supervisor
//! ([`crate::detached`]) so that, like the cluster's Prometheus, it outlives a greenflow that dies or leaves it
//! draining.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use greenflow_config::{Secret, Settings};
use greenflow_sink::ensure_dir;
use serde::{Deserialize, Serialize};

use crate::RUN_LABEL;
use crate::backend::{BackendError, BackendInfo, BackendKind, ClusterBackend, Progress};
use crate::detached::DetachedCluster;
use crate::local::LocalCluster;
use crate::record::RunId;

/// The remote-write queue name the agent's configuration uses.
const REMOTE_NAME: &str = "greenflow-sink";

/// What the lock file says about its holder.
#[derive(Debug, Serialize, Deserialize)]
struct LockHolder {
    holder: String,
    run: String,
    #[serde(with = "time::serde::rfc3339")]
    since: time::OffsetDateTime,
}

/// node-exporter and a Prometheus agent on this machine, writing to the sink at `remote_write_url`.
#[derive(Debug)]
pub struct LocalBackend {
    settings: Settings,
    remote_write_url: String,
    username: String,
    password: Secret,
    lock: Option<File>,
    launcher: Vec<OsString>,
    cluster: Option<DetachedCluster>,
    http: reqwest::Client,
}

impl LocalBackend {
    /// A back-end whose agent writes to `remote_write_url` as `username`; `launcher` is greenflow's executable and
    /// the arguments of its hidden `local-cluster` command, which runs the stand-in in the background (the run's
    /// directory is appended).
    pub fn new(
        settings: &Settings,
        remote_write_url: &str,
        username: &str,
        password: Secret,
        launcher: Vec<OsString>,
    ) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap_or_default();
        Self {
            settings: settings.clone(),
            remote_write_url: remote_write_url.to_owned(),
            username: username.to_owned(),
            password,
            lock: None,
            launcher,
            cluster: None,
            http,
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.settings.paths.local_cluster_dir().join("lock")
    }

    fn agent_url(&self, path: &str) -> Option<String> {
        self.cluster.as_ref().map(|c| format!("http://{}{path}", c.state.prometheus_listen))
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    move |e| BackendError::other(context, e)
}

impl ClusterBackend for LocalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    async fn preflight(&mut self) -> Result<BackendInfo, BackendError> {
        let versions =
            crate::local::check_local_programs(&self.settings).map_err(|e| BackendError::message(e.to_string()))?;
        Ok(BackendInfo { description: "node-exporter and a Prometheus agent on this machine".into(), versions })
    }

    async fn acquire_lock(&mut self, run: &RunId, holder: &str, _progress: Progress<'_>) -> Result<(), BackendError> {
        let path = self.lock_path();
        if let Some(dir) = path.parent() {
            ensure_dir(dir).map_err(|e| BackendError::message(e.to_string()))?;
        }
        let open_error = io_error(format!("cannot open the local cluster's lock `{}`", path.display()));
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(open_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let (holder, since) = match serde_json::from_str::<LockHolder>(&text) {
                    Ok(h) => {
                        (h.holder, h.since.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
                    }
                    Err(_) => ("another greenflow process".into(), "unknown".into()),
                };
                return Err(BackendError::LockHeld { holder, since, expires: String::new() });
            }
            Err(TryLockError::Error(e)) => {
                return Err(BackendError::other(format!("cannot lock `{}`", path.display()), e));
            }
        }
        let record =
            LockHolder { holder: holder.to_owned(), run: run.to_string(), since: time::OffsetDateTime::now_utc() };
        let text = serde_json::to_string(&record).unwrap_or_default();
        let write_error = io_error(format!("cannot write the local cluster's lock `{}`", path.display()));
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(write_error)?;
        self.lock = Some(file);
        Ok(())
    }

    fn renew_interval(&self) -> Duration {
        // The lock lives as long as this process holds the file: nothing to renew.
        Duration::from_secs(3600)
    }

    async fn renew_lock(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn release_lock(&mut self) -> Result<(), BackendError> {
        if let Some(file) = self.lock.take() {
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
        Ok(())
    }

    async fn scale_up(
        &mut self,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<(), BackendError> {
        if self.cluster.is_some() {
            return Ok(());
        }
        let dir_name = labels.get(RUN_LABEL).cloned().unwrap_or_else(|| "run".into());
        let plan = LocalCluster::plan_with_labels(
            &self.settings,
            &dir_name,
            labels,
            &self.remote_write_url,
            &self.username,
            &self.password,
        )
        .map_err(|e| BackendError::message(e.to_string()))?;
        progress("starting node-exporter and the Prometheus agent");
        let cluster = DetachedCluster::start(&plan, &self.launcher, timeout, progress).await.map_err(|e| match e {
            crate::RunError::Backend(b) => b,
            other => BackendError::message(other.to_string()),
        })?;
        self.cluster = Some(cluster);
        Ok(())
    }

    async fn prometheus_metrics(&mut self) -> Result<Vec<String>, BackendError> {
        let url =
            self.agent_url("/metrics").ok_or_else(|| BackendError::message("the Prometheus agent is not running"))?;
        let response =
            self.http.get(&url).send().await.map_err(|e| BackendError::other(format!("cannot read {url}"), e))?;
        if !response.status().is_success() {
            return Err(BackendError::message(format!("{url} answered {}", response.status())));
        }
        let text = response.text().await.map_err(|e| BackendError::other(format!("cannot read {url}"), e))?;
        Ok(vec![text])
    }

    fn remote_name(&self) -> &str {
        REMOTE_NAME
    }

    async fn resume(&mut self, run: &RunId) -> Result<bool, BackendError> {
        if self.cluster.is_none() {
            self.cluster = DetachedCluster::find(&self.settings.paths.local_cluster_dir().join(run.as_str()));
        }
        Ok(self.cluster.is_some())
    }

    async fn scale_down(&mut self, _progress: Progress<'_>) -> Result<(), BackendError> {
        if let Some(mut cluster) = self.cluster.take() {
            cluster.stop().await;
            // The supervisor removes it when it stops in order; not after a SIGKILL.
            let _ = std::fs::remove_file(cluster.dir.join(crate::local::PASSWORD_FILE));
        }
        Ok(())
    }
}
