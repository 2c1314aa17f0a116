//! Finding the programs greenflow runs, and asking them their version.

use std::path::{Path, PathBuf};

use greenflow_config::Env;

use crate::error::SinkError;

/// A program greenflow may run, with the names it goes by and the packages that ship it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// VictoriaMetrics single node.
    VictoriaMetrics,
    /// Caddy.
    Caddy,
    /// Grafana (`grafana`, or the older `grafana-server`).
    Grafana,
    /// Prometheus (the local stand-in cluster runs it in agent mode).
    Prometheus,
    /// node-exporter.
    NodeExporter,
}

impl Program {
    /// Executable names to look for on PATH, preferred first.
    pub fn executable_names(self) -> &'static [&'static str] {
        match self {
            Self::VictoriaMetrics => &["victoria-metrics", "victoriametrics", "victoria-metrics-prod"],
            Self::Caddy => &["caddy"],
            Self::Grafana => &["grafana", "grafana-server"],
            Self::Prometheus => &["prometheus"],
            Self::NodeExporter => &["prometheus-node-exporter", "node_exporter"],
        }
    }

    /// The Debian package and the nixpkgs attribute that provide it.
    pub fn packages(self) -> (&'static str, &'static str) {
        match self {
            Self::VictoriaMetrics => ("victoria-metrics", "victoriametrics"),
            Self::Caddy => ("caddy", "caddy"),
            Self::Grafana => ("grafana (Grafana's own apt repository)", "grafana"),
            Self::Prometheus => ("prometheus", "prometheus"),
            Self::NodeExporter => ("prometheus-node-exporter", "prometheus-node-exporter"),
        }
    }

    /// The configuration key that sets its path.
    pub fn config_key(self) -> &'static str {
        match self {
            Self::VictoriaMetrics => "sink.victoria_metrics.binary",
            Self::Caddy => "sink.caddy.binary",
            Self::Grafana => "sink.grafana.binary",
            Self::Prometheus => "local.prometheus_binary",
            Self::NodeExporter => "local.node_exporter_binary",
        }
    }

    /// A short human name.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::VictoriaMetrics => "VictoriaMetrics",
            Self::Caddy => "Caddy",
            Self::Grafana => "Grafana",
            Self::Prometheus => "Prometheus",
            Self::NodeExporter => "node-exporter",
        }
    }

    /// Finds the program: the configured path if given (it must exist), else the first name found on the
    /// environment's PATH.
    pub fn locate(self, configured: Option<&Path>, env: &Env) -> Result<PathBuf, SinkError> {
        if let Some(path) = configured {
            use std::os::unix::fs::PermissionsExt;
            return match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(path.to_owned()),
                Ok(_) => Err(SinkError::BinaryNotExecutable { program: self, path: path.to_owned() }),
                Err(_) => Err(SinkError::BinaryNotAtPath { program: self, path: path.to_owned() }),
            };
        }
        let search_path = env.get("PATH").unwrap_or_default();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        self.executable_names()
            .iter()
            .find_map(|name| which::which_in(name, Some(search_path), &cwd).ok())
            .ok_or(SinkError::BinaryNotFound { program: self })
    }
}

/// Picks the first token that looks like a version (`v2.6.2`, `2.42.0+ds`, `1.79.5`) out of a program's output.
pub fn parse_version(output: &str) -> Option<String> {
    output
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .flat_map(|token| token.split("-tags-"))
        .map(|token| token.trim_start_matches('v'))
        .find(|token| {
            let mut parts = token.split('.');
            let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            numeric(parts.next()) && numeric(parts.next())
        })
        .map(|token| token.split('-').next().unwrap_or(token).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_real_outputs() {
        assert_eq!(parse_version("2.6.2\n").as_deref(), Some("2.6.2"));
        assert_eq!(parse_version("v2.8.4 h1:q3pe0wpBj1OcHFZ3n/1nl4V4bxBrYoSoab7rL9BMYNk=").as_deref(), Some("2.8.4"));
        assert_eq!(
            parse_version("prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5)").as_deref(),
            Some("2.42.0+ds")
        );
        assert_eq!(parse_version("grafana version 12.1.0").as_deref(), Some("12.1.0"));
        assert_eq!(parse_version("victoria-metrics-20220802-100000-tags-v1.79.5-0-g1234").as_deref(), Some("1.79.5"));
        assert_eq!(parse_version(""), None);
    }
}
