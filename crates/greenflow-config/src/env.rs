//! The environment greenflow reads: process variables first, then `.secrets.env` for the ones that are unset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::secret::Secret;

/// The secrets greenflow reads from the environment, with the names the original project used as fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretVar {
    /// The password for remote write and queries (`GREENFLOW_SINK_PASSWORD`).
    SinkPassword,
    /// Grafana's admin password (`GRAFANA_ADMIN_PASSWORD`).
    GrafanaAdminPassword,
    /// A Tailscale auth key (`TS_AUTHKEY`, or `TAILSCALE_AUTH_KEY` as the original project named it).
    TailscaleAuthKey,
}

impl SecretVar {
    /// Every secret variable, in documentation order.
    pub const ALL: [SecretVar; 3] = [Self::SinkPassword, Self::GrafanaAdminPassword, Self::TailscaleAuthKey];

    /// The variable names, preferred first.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Self::SinkPassword => &["GREENFLOW_SINK_PASSWORD"],
            Self::GrafanaAdminPassword => &["GRAFANA_ADMIN_PASSWORD"],
            Self::TailscaleAuthKey => &["TS_AUTHKEY", "TAILSCALE_AUTH_KEY"],
        }
    }
}

/// A snapshot of the variables greenflow may read. Nothing here changes the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    secrets_file: Option<PathBuf>,
}

impl Env {
    /// Takes the process variables, then adds those of `secrets_file` (if it exists) that are not already set.
    pub fn load(
        process_env: impl IntoIterator<Item = (String, String)>,
        secrets_file: &Path,
    ) -> Result<Self, ConfigError> {
        let mut vars: BTreeMap<String, String> = process_env.into_iter().collect();
        let mut loaded = None;
        if secrets_file.is_file() {
            let entries = dotenvy::from_path_iter(secrets_file)
                .map_err(|source| ConfigError::SecretsFile { path: secrets_file.to_owned(), source })?;
            for entry in entries {
                let (name, value) =
                    entry.map_err(|source| ConfigError::SecretsFile { path: secrets_file.to_owned(), source })?;
                vars.entry(name).or_insert(value);
            }
            loaded = Some(secrets_file.to_owned());
        }
        Ok(Self { vars, secrets_file: loaded })
    }

    /// An environment made of exactly these variables (for tests and embedding).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { vars: vars.into_iter().collect(), secrets_file: None }
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A non-empty secret, looked up under each of its names.
    pub fn secret(&self, var: SecretVar) -> Option<Secret> {
        var.names().iter().find_map(|name| self.get(name).filter(|v| !v.is_empty()).map(Secret::new))
    }

    /// The `.secrets.env` file that was read, if any.
    pub fn secrets_file(&self) -> Option<&Path> {
        self.secrets_file.as_deref()
    }
}
