//! The sink's configuration rendered for a service manager (the Nix modules) instead of `sink up`: the same
//! Caddyfile and Grafana files, with no secret in them, so that they may live in a world-readable store.
//!
//! The password hash is the one value that differs: the Caddyfile reads it from the environment variable
//! [`PASSWORD_HASH_VAR`] (Caddy's `{$VAR}` placeholder), which the service sets at start from a password file.

use std::path::{Path, PathBuf};

use greenflow_config::Settings;
use serde::Serialize;

use crate::binaries::Program;
use crate::error::SinkError;
use crate::files::{ensure_dir, write_public};
use crate::layout::{GrafanaLayout, PasswordHashes, caddyfile, write_grafana_files};
use crate::versions::{self, Release};

/// The environment variable the rendered Caddyfile takes the bcrypt hash of the sink password from.
pub const PASSWORD_HASH_VAR: &str = "GREENFLOW_SINK_PASSWORD_HASH";

/// The environment variable the rendered Caddyfile takes the bcrypt hash of the writer's password from.
pub const WRITER_PASSWORD_HASH_VAR: &str = "GREENFLOW_SINK_WRITER_PASSWORD_HASH";

/// The environment variable the rendered Caddyfile takes the bcrypt hash of the reader's password from.
pub const READER_PASSWORD_HASH_VAR: &str = "GREENFLOW_SINK_READER_PASSWORD_HASH";

/// Tokens that pass the Caddyfile checks; replaced by the `{$VAR}` placeholders after rendering.
const HASH_SENTINEL: &str = "GREENFLOW-SINK-PASSWORD-HASH-FROM-ENVIRONMENT";
const WRITER_HASH_SENTINEL: &str = "GREENFLOW-SINK-WRITER-PASSWORD-HASH-FROM-ENVIRONMENT";
const READER_HASH_SENTINEL: &str = "GREENFLOW-SINK-READER-PASSWORD-HASH-FROM-ENVIRONMENT";

/// Where Grafana's rendered configuration points for its secrets; the service manager provides the files.
#[derive(Debug, Clone, Default)]
pub struct RenderSecrets {
    /// Grafana's admin password file; default `<data>/secrets/grafana-admin-password` as `sink up` uses.
    pub grafana_admin_password_file: Option<PathBuf>,
    /// Grafana's `secret_key` file; default `<data>/secrets/grafana-secret-key`.
    pub grafana_secret_key_file: Option<PathBuf>,
    /// The file Grafana reads its datasource's password from (the reader's); default
    /// `<data>/secrets/sink-reader-password`.
    pub grafana_datasource_password_file: Option<PathBuf>,
}

/// The files [`render_config`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedConfig {
    /// `caddy/Caddyfile`.
    pub caddyfile: PathBuf,
    /// `grafana/grafana.ini`, when Grafana is enabled.
    pub grafana_ini: Option<PathBuf>,
    /// `grafana/provisioning/datasources`.
    pub grafana_datasources: Option<PathBuf>,
    /// `grafana/provisioning/dashboards` (the dashboard provider).
    pub grafana_dashboard_providers: Option<PathBuf>,
    /// `grafana/dashboards` (the dashboard JSON files).
    pub grafana_dashboards: Option<PathBuf>,
}

/// Renders the Caddyfile and Grafana's files under `out` (made absolute), with the same functions `sink up` uses.
/// Writes no secret; starts nothing. Grafana's files are written when `sink.grafana.enabled`, whether or not a
/// Grafana binary is installed here.
///
/// `public_bind` is what the public site listens on (the tailnet addresses, which are not known to the renderer);
/// empty: every interface, for a service manager whose firewall keeps the port to the tailnet.
pub fn render_config(
    settings: &Settings,
    out: &Path,
    secrets: &RenderSecrets,
    public_bind: &[std::net::IpAddr],
) -> Result<RenderedConfig, SinkError> {
    ensure_dir(out)?;
    let out = std::fs::canonicalize(out).map_err(|source| SinkError::Io {
        action: "resolve",
        path: out.to_owned(),
        source,
    })?;
    let sink = &settings.config.sink;
    // The Caddy that will serve the file picks the directive; without one here, the current spelling.
    let caddy_release = match Program::Caddy.locate(sink.caddy.binary.as_deref(), &settings.env) {
        Ok(binary) => versions::detect_supported(Program::Caddy, &binary)?,
        Err(_) => Release::Unknown,
    };
    let with_grafana = sink.grafana.enabled;
    let hashes = PasswordHashes {
        owner: HASH_SENTINEL.to_owned(),
        writer: WRITER_HASH_SENTINEL.to_owned(),
        reader: READER_HASH_SENTINEL.to_owned(),
    };
    // Without addresses, a service manager's sink binds what its own firewall allows (the NixOS module opens the
    // port on the Tailscale interface only).
    let mut rendered =
        caddyfile(settings, hashes, versions::caddy_auth_directive(&caddy_release), with_grafana, public_bind)?;
    // The owner's hash stands in the write, read and owner's routes, the writer's in the write route only, the
    // reader's in the read route only.
    // The Funnel site takes the writer alone, once more.
    let funnel = usize::from(settings.config.cluster.funnel());
    for (sentinel, var, count) in [
        (HASH_SENTINEL, PASSWORD_HASH_VAR, 3),
        (WRITER_HASH_SENTINEL, WRITER_PASSWORD_HASH_VAR, 1 + funnel),
        (READER_HASH_SENTINEL, READER_PASSWORD_HASH_VAR, 1),
    ] {
        let quoted = format!("\"{sentinel}\"");
        if rendered.matches(&quoted).count() != count {
            return Err(SinkError::RenderedLayout {
                reason: "the user name collides with a password-hash placeholder",
            });
        }
        rendered = rendered.replace(&quoted, &format!("\"{{${var}}}\""));
    }
    let caddyfile_path = out.join("caddy/Caddyfile");
    write_public(&caddyfile_path, &rendered)?;

    let mut result = RenderedConfig {
        caddyfile: caddyfile_path,
        grafana_ini: None,
        grafana_datasources: None,
        grafana_dashboard_providers: None,
        grafana_dashboards: None,
    };
    if with_grafana {
        let dir = out.join("grafana");
        let secrets_dir = settings.paths.secrets_dir();
        let layout = GrafanaLayout {
            dir: dir.clone(),
            logs_dir: settings.paths.sink_state_dir().join("logs"),
            admin_password_file: secrets
                .grafana_admin_password_file
                .clone()
                .unwrap_or_else(|| secrets_dir.join("grafana-admin-password")),
            secret_key_file: secrets
                .grafana_secret_key_file
                .clone()
                .unwrap_or_else(|| secrets_dir.join("grafana-secret-key")),
            datasource_password_file: secrets
                .grafana_datasource_password_file
                .clone()
                .unwrap_or_else(|| crate::layout::reader_password_file(settings)),
        };
        result.grafana_ini = Some(write_grafana_files(settings, &layout)?);
        result.grafana_datasources = Some(dir.join("provisioning/datasources"));
        result.grafana_dashboard_providers = Some(dir.join("provisioning/dashboards"));
        result.grafana_dashboards = Some(dir.join("dashboards"));
    }
    Ok(result)
}
