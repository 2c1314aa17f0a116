//! The environment greenflow reads: process variables first, then `.secrets.env` for the ones that are unset.

use std::collections::{BTreeMap, BTreeSet};
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

/// The process environment as text, for [`crate::Settings::load`] (`std::env::vars` panics on a value that is not
/// UTF-8). A variable greenflow reads whose value is not UTF-8 is an error naming it; any other such variable is
/// left out, since nothing here reads it.
pub fn utf8_vars(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    const READ: [&str; 6] = ["HOME", "PATH", "KUBECONFIG", "NODENAME", "TAILSCALE_DOMAIN", "EXPERIMENT_STORAGE_URL"];
    let mut out = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else { continue };
        match value.into_string() {
            Ok(value) => out.push((name, value)),
            Err(_) => {
                let read = READ.contains(&name.as_str())
                    || name.starts_with("GREENFLOW_")
                    || name.starts_with("XDG_")
                    || SecretVar::ALL.iter().any(|var| var.names().contains(&name.as_str()));
                if read {
                    return Err(ConfigError::NotUtf8 { var: name });
                }
            }
        }
    }
    Ok(out)
}

/// A snapshot of the variables greenflow may read. Nothing here changes the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    secrets_file: Option<PathBuf>,
    /// The variables whose value came from `secrets_file`.
    from_file: BTreeSet<String>,
}

impl Env {
    /// Takes the process variables, then adds those of `secrets_file` (if it exists) that are not already set.
    pub fn load(
        process_env: impl IntoIterator<Item = (String, String)>,
        secrets_file: &Path,
    ) -> Result<Self, ConfigError> {
        let mut vars: BTreeMap<String, String> = process_env.into_iter().collect();
        let mut loaded = None;
        let mut from_file = BTreeSet::new();
        if secrets_file.is_file() {
            let text = std::fs::read_to_string(secrets_file)
                .map_err(|source| ConfigError::Read { path: secrets_file.to_owned(), source })?;
            for (name, value) in parse_secrets_file(&text, secrets_file)? {
                if let std::collections::btree_map::Entry::Vacant(entry) = vars.entry(name) {
                    from_file.insert(entry.key().clone());
                    entry.insert(value);
                }
            }
            loaded = Some(secrets_file.to_owned());
        }
        Ok(Self { vars, secrets_file: loaded, from_file })
    }

    /// An environment made of exactly these variables (for tests and embedding).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { vars: vars.into_iter().collect(), secrets_file: None, from_file: BTreeSet::new() }
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

    /// Checks the passwords greenflow hands on byte for byte: Caddy hashes exactly the bytes it is given while
    /// Prometheus' `password_file` drops surrounding blanks, so a value with blanks or control characters around it
    /// would be accepted by one and refused by the other. An empty value is refused rather than taken for "unset".
    /// The messages never hold the value.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        for var in [SecretVar::SinkPassword, SecretVar::GrafanaAdminPassword] {
            for name in var.names() {
                let Some(value) = self.get(name) else { continue };
                let problem = if value.is_empty() {
                    Some(("is set but empty", "unset it to have one generated, or give a password"))
                } else if value.chars().any(char::is_control) {
                    Some((
                        "contains a control character (a newline or tab, perhaps from a file)",
                        "remove it: the password is used byte for byte",
                    ))
                } else if value.trim() != value {
                    Some((
                        "has leading or trailing blanks",
                        "remove them: Caddy checks the exact bytes while Prometheus' password_file drops them",
                    ))
                } else {
                    None
                };
                if let Some((problem, fix)) = problem {
                    let origin = match (&self.secrets_file, self.from_file.contains(*name)) {
                        (Some(file), true) => format!(" (from `{}`)", file.display()),
                        _ => String::new(),
                    };
                    return Err(ConfigError::Secret {
                        var: format!("{name}{origin}"),
                        problem: problem.to_owned(),
                        fix: fix.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Parses `.secrets.env` with dotenvy's rules. A malformed line is reported by its number only: dotenvy's own error
/// quotes the line, which may hold a secret.
fn parse_secrets_file(text: &str, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let consumed = std::cell::Cell::new(0usize);
    let reader = LineAtATime { text: text.as_bytes(), consumed: &consumed };
    let mut entries = Vec::new();
    for entry in dotenvy::from_read_iter(reader) {
        match entry {
            Ok(pair) => entries.push(pair),
            Err(err) => {
                let read = &text.as_bytes()[..consumed.get()];
                let lines_read = read.iter().filter(|b| **b == b'\n').count()
                    + usize::from(!read.is_empty() && !read.ends_with(b"\n"));
                let line = match &err {
                    // At the end of the file with a quote still open: the entry starts where the held text starts.
                    dotenvy::Error::LineParse(held, index) if *index == held.len() && consumed.get() == text.len() => {
                        lines_read + 1 - held.lines().count().max(1)
                    }
                    _ => lines_read.max(1),
                };
                return Err(ConfigError::SecretsFile { path: path.to_owned(), line });
            }
        }
    }
    Ok(entries)
}

/// A reader that hands out at most one line per `read`, so that the bytes it has handed out tell which line the
/// parser stopped at.
struct LineAtATime<'a> {
    text: &'a [u8],
    consumed: &'a std::cell::Cell<usize>,
}

impl std::io::Read for LineAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.text[self.consumed.get()..];
        let line_end = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |i| i + 1);
        let n = line_end.min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.consumed.set(self.consumed.get() + n);
        Ok(n)
    }
}
