//! Where greenflow keeps data (kept for years) and state (only while something runs).

use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::ConfigError;
use crate::model::PathsConfig;

/// The resolved directories. Nothing is created here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Samples, Grafana's database, run records and generated secrets (`$XDG_DATA_HOME/greenflow`).
    pub data_dir: PathBuf,
    /// Pid file, logs and generated configuration (`$XDG_STATE_HOME/greenflow`).
    pub state_dir: PathBuf,
}

impl Paths {
    /// Applies the configuration's overrides (relative to `project_dir`) or the XDG defaults.
    pub fn resolve(config: &PathsConfig, env: &Env, project_dir: &Path) -> Result<Self, ConfigError> {
        let absolute = |p: &Path| if p.is_absolute() { p.to_owned() } else { project_dir.join(p) };
        let xdg = |var: &str, fallback: &str| -> Result<PathBuf, ConfigError> {
            match env.get(var).filter(|v| Path::new(v).is_absolute()) {
                Some(dir) => Ok(PathBuf::from(dir).join("greenflow")),
                None => {
                    let home = env.get("HOME").filter(|h| !h.is_empty()).ok_or(ConfigError::NoHome)?;
                    Ok(Path::new(home).join(fallback).join("greenflow"))
                }
            }
        };
        let data_dir = match &config.data_dir {
            Some(dir) => absolute(dir),
            None => xdg("XDG_DATA_HOME", ".local/share")?,
        };
        let state_dir = match &config.state_dir {
            Some(dir) => absolute(dir),
            None => xdg("XDG_STATE_HOME", ".local/state")?,
        };
        Ok(Self { data_dir, state_dir })
    }

    /// VictoriaMetrics' storage.
    pub fn victoria_metrics_data(&self) -> PathBuf {
        self.data_dir.join("victoria-metrics")
    }

    /// Grafana's database and plugins.
    pub fn grafana_data(&self) -> PathBuf {
        self.data_dir.join("grafana")
    }

    /// Run records (`<id>.json`).
    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.join("runs")
    }

    /// Generated secrets (files of mode 0600).
    pub fn secrets_dir(&self) -> PathBuf {
        self.data_dir.join("secrets")
    }

    /// The running sink's pid file, lock, logs and generated configuration.
    pub fn sink_state_dir(&self) -> PathBuf {
        self.state_dir.join("sink")
    }

    /// The local stand-in cluster's configuration and WAL.
    pub fn local_cluster_dir(&self) -> PathBuf {
        self.state_dir.join("local-cluster")
    }
}
