//! greenflow's settings model.
//!
//! This crate turns `greenflow.yaml`, the process environment and an optional `.secrets.env` into one validated
//! [`Settings`] value. It knows the defaults (so no file is needed at all), the names of the original project's
//! variables, and where data and state live. It does not start anything, render any file or talk to any server.
//!
//! Every error names the key or variable at fault and says how to fix it.

mod env;
mod error;
mod model;
mod paths;
pub mod report;
mod secret;
mod suggest;

pub use env::{Env, SecretVar, utf8_vars};
pub use error::ConfigError;
pub use model::{
    CaddyConfig, ClusterConfig, ClusterStorage, ClusterTailscale, Config, GrafanaConfig, LocalClusterConfig,
    PathsConfig, PublicAddress, Reach, RemoteWriteConfig, Retention, RunConfig, SinkConfig, TAILSCALE_IMAGE,
    VictoriaMetricsConfig,
};
pub use paths::Paths;
pub use report::{Aggregation, IdleConfig, QueryConfig, ReportConfig, WorkConfig};
pub use secret::Secret;

use std::path::{Path, PathBuf};

/// The file name greenflow looks for, upward from the working directory.
pub const CONFIG_FILE_NAME: &str = "greenflow.yaml";
/// The configuration the NixOS module writes, used when no other is found.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/greenflow/greenflow.yaml";
/// The secrets file read next to the configuration file (or in the working directory).
pub const SECRETS_FILE_NAME: &str = ".secrets.env";

/// Everything a command needs to know before doing any work: the parsed configuration, where it came from, the
/// environment (with `.secrets.env` merged in) and the resolved directories.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The validated configuration (defaults where the file is silent).
    pub config: Config,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The directory that holds the configuration file (or the working directory when there is none).
    pub project_dir: PathBuf,
    /// The environment: process variables, then `.secrets.env` for those that are unset.
    pub env: Env,
    /// Data and state directories.
    pub paths: Paths,
}

impl Settings {
    /// Loads settings the way the CLI does: `explicit` (from `--config`) if given, else the file [`discover`] finds,
    /// else defaults. `process_env` is the process environment.
    pub fn load(
        explicit: Option<&Path>,
        cwd: &Path,
        process_env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let process_env: Vec<(String, String)> = process_env.into_iter().collect();
        let var = |name: &str| process_env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let user_config = user_config_file(var("XDG_CONFIG_HOME"), var("HOME"));
        let config_file = match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::ConfigFileMissing { path: path.to_owned() });
                }
                Some(path.to_owned())
            }
            None => discover(cwd, user_config.as_deref(), Path::new(SYSTEM_CONFIG_FILE)),
        };
        let project_dir = config_file
            .as_deref()
            .and_then(Path::parent)
            .map(|p| if p.as_os_str().is_empty() { cwd.to_owned() } else { p.to_owned() })
            .unwrap_or_else(|| cwd.to_owned());
        let config = match &config_file {
            Some(path) => Config::parse_file(path)?,
            None => Config::default(),
        };
        let env = Env::load(process_env, &project_dir.join(SECRETS_FILE_NAME))?;
        let paths = Paths::resolve(&config.paths, &env, &project_dir)?;
        let settings = Self { config, config_file, project_dir, env, paths };
        settings.validate()?;
        Ok(settings)
    }

    /// One pass over the file's values and what can only be checked once the environment is known (the secrets'
    /// bytes, the public address): every problem at once.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = model::Problems::default();
        let in_file = |err: ConfigError| match &self.config_file {
            Some(path) => err.in_file(path),
            None => err,
        };
        problems.check(self.config.validate().map_err(in_file));
        problems.check(self.env.check_secrets());
        // The file's own public_host problem is already counted.
        if self.config.sink.public_host.as_deref().is_none_or(|h| PublicAddress::parse(h, "sink.public_host").is_ok())
            || self.env.get("EXPERIMENT_STORAGE_URL").is_some_and(|v| !v.is_empty())
        {
            problems.check(self.public_address().map(|_| ()));
        }
        problems.finish()
    }

    /// The address the cluster uses to reach the sink, if one is configured: `EXPERIMENT_STORAGE_URL` (full
    /// remote-write URL) wins, then `sink.public_host`, then `NODENAME` + `TAILSCALE_DOMAIN`.
    pub fn public_address(&self) -> Result<Option<PublicAddress>, ConfigError> {
        if let Some(url) = self.env.get("EXPERIMENT_STORAGE_URL").filter(|v| !v.is_empty()) {
            return PublicAddress::from_remote_write_url(url, "EXPERIMENT_STORAGE_URL").map(Some);
        }
        if let Some(host) = &self.config.sink.public_host {
            return PublicAddress::parse(host, "sink.public_host").map(Some);
        }
        match (self.env.get("NODENAME"), self.env.get("TAILSCALE_DOMAIN")) {
            (Some(node), Some(domain)) if !node.is_empty() && !domain.is_empty() => {
                PublicAddress::parse(&format!("{node}.{domain}"), "NODENAME/TAILSCALE_DOMAIN").map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// Looks for `name` in `start` and each of its ancestors. Anything of that name counts (a directory too, which
/// then fails to load with its path named, instead of being passed over).
pub fn find_upward(start: &Path, name: &str) -> Option<PathBuf> {
    start.ancestors().map(|dir| dir.join(name)).find(|candidate| candidate.symlink_metadata().is_ok())
}

/// `$XDG_CONFIG_HOME/greenflow/greenflow.yaml` (`~/.config/...` when unset), where the home-manager module writes it.
pub fn user_config_file(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let base = match xdg_config_home.filter(|dir| Path::new(dir).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("greenflow").join(CONFIG_FILE_NAME))
}

/// The configuration file to use without `--config`: `greenflow.yaml` upward from `cwd` (a project's own), then the
/// user's (`user_config`, from the home-manager module), then the system's (`system_config`, from the NixOS module).
pub fn discover(cwd: &Path, user_config: Option<&Path>, system_config: &Path) -> Option<PathBuf> {
    find_upward(cwd, CONFIG_FILE_NAME)
        .or_else(|| user_config.filter(|p| p.symlink_metadata().is_ok()).map(Path::to_owned))
        .or_else(|| system_config.symlink_metadata().is_ok().then(|| system_config.to_owned()))
}

#[cfg(test)]
mod tests;
