//! Grafana's configuration: `grafana.ini` for a loopback Grafana served under `/grafana/`, the provisioned
//! VictoriaMetrics datasource (fixed uid) and the dashboard provider.

use std::path::{Path, PathBuf};
use std::time::Duration;

use askama::Template;

use crate::escape::{check_ini_value, grafana_provisioning_literal, prometheus_duration};
use crate::{RenderError, reparse_yaml};

/// The uid of the provisioned datasource; dashboards refer to it.
pub const DATASOURCE_UID: &str = "greenflow-victoriametrics";

/// The experiment dashboard, provisioned as it is.
pub const DASHBOARD_JSON: &str = include_str!("../../../templates/grafana/dashboards/greenflow-experiment.json");

/// What Grafana's files need.
#[derive(Debug, Clone)]
pub struct GrafanaInput {
    /// Loopback port.
    pub port: u16,
    /// The host users reach Grafana at (the public host, or `127.0.0.1`).
    pub domain: String,
    /// Full URL of Grafana behind Caddy, ending in `/grafana/`.
    pub root_url: String,
    /// Grafana's database and plugins.
    pub data_dir: PathBuf,
    /// Grafana's logs.
    pub logs_dir: PathBuf,
    /// Provisioning root (`datasources/`, `dashboards/` below it).
    pub provisioning_dir: PathBuf,
    /// Where the dashboard JSON files are.
    pub dashboards_dir: PathBuf,
    /// Admin user (setting `sink.grafana.admin_user`).
    pub admin_user: String,
    /// File holding the admin password (read by Grafana through `$__file{}`).
    pub admin_password_file: PathBuf,
    /// File holding `secret_key`.
    pub secret_key_file: PathBuf,
    /// VictoriaMetrics' URL as Grafana reaches it (Caddy's loopback site, `.../vm`).
    pub datasource_url: String,
    /// The datasource's basic-auth user (the sink's reader).
    pub datasource_user: String,
    /// File holding the datasource's password (read by Grafana through `$__file{}`).
    pub datasource_password_file: PathBuf,
    /// The scrape interval, Grafana's smallest useful step.
    pub scrape_interval: Duration,
}

/// The rendered files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrafanaFiles {
    /// `grafana.ini`.
    pub ini: String,
    /// `provisioning/datasources/greenflow.yaml`.
    pub datasources: String,
    /// `provisioning/dashboards/greenflow.yaml`.
    pub dashboards: String,
}

#[derive(Template)]
#[template(path = "grafana/grafana.ini")]
struct IniTemplate<'a> {
    port: u16,
    domain: &'a str,
    root_url: &'a str,
    data_dir: &'a str,
    logs_dir: &'a str,
    plugins_dir: &'a str,
    provisioning_dir: &'a str,
    admin_user: &'a str,
    admin_password_ref: &'a str,
    secret_key_ref: &'a str,
}

#[derive(Template)]
#[template(path = "grafana/datasources.yaml")]
struct DatasourcesTemplate<'a> {
    name: &'a str,
    uid: &'a str,
    url: &'a str,
    basic_auth_user: &'a str,
    basic_auth_password_ref: &'a str,
    time_interval: &'a str,
}

#[derive(Template)]
#[template(path = "grafana/dashboards.yaml")]
struct DashboardsTemplate<'a> {
    dashboards_dir: &'a str,
}

/// Checks a path for the ini file and returns it as text.
fn ini_path<'a>(field: &str, path: &'a Path) -> Result<&'a str, RenderError> {
    let text = path
        .to_str()
        .ok_or_else(|| RenderError::unsafe_value(field, &path.to_string_lossy(), "the path is not valid UTF-8"))?;
    check_ini_value(field, text)?;
    Ok(text)
}

/// A `$__file{path}` reference; the path must not close the braces early.
fn file_ref(field: &str, path: &Path) -> Result<String, RenderError> {
    let text = ini_path(field, path)?;
    if text.contains('}') {
        return Err(RenderError::unsafe_value(field, text, "Grafana's $__file{} cannot read a path with '}'"));
    }
    Ok(format!("$__file{{{text}}}"))
}

/// A `$__file{path}` reference in a provisioning file, which expands it (Grafana's
/// `pkg/services/provisioning/values/values.go`: `setting.ExpandVar`, then `os.ExpandEnv`): the path may hold
/// neither `}` nor `$`.
fn provisioning_file_ref(path: &Path) -> Result<String, RenderError> {
    let text = path.to_str().ok_or_else(|| {
        RenderError::unsafe_value("paths.data_dir", &path.to_string_lossy(), "the path is not valid UTF-8")
    })?;
    if text.contains(['}', '$']) || text.chars().any(char::is_control) {
        return Err(RenderError::unsafe_value(
            "paths.data_dir",
            text,
            "Grafana's $__file{} cannot read a path with '}', '$' or control characters",
        ));
    }
    Ok(format!("$__file{{{text}}}"))
}

/// A YAML double-quoted scalar holding exactly `value` (a JSON string is one).
fn yaml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// Renders `grafana.ini` and the provisioning files.
pub fn render_grafana(input: &GrafanaInput) -> Result<GrafanaFiles, RenderError> {
    check_ini_value("sink.grafana.admin_user", &input.admin_user)?;
    check_ini_value("sink.public_host", &input.domain)?;
    check_ini_value("grafana root URL", &input.root_url)?;
    let plugins_dir = input.data_dir.join("plugins");
    let ini = IniTemplate {
        port: input.port,
        domain: &input.domain,
        root_url: &input.root_url,
        data_dir: ini_path("paths.data_dir", &input.data_dir)?,
        logs_dir: ini_path("paths.state_dir", &input.logs_dir)?,
        plugins_dir: ini_path("paths.data_dir", &plugins_dir)?,
        provisioning_dir: ini_path("paths.state_dir", &input.provisioning_dir)?,
        admin_user: &input.admin_user,
        admin_password_ref: &file_ref("paths.data_dir", &input.admin_password_file)?,
        secret_key_ref: &file_ref("paths.data_dir", &input.secret_key_file)?,
    }
    .render()
    .map_err(RenderError::template("grafana/grafana.ini"))?;

    let datasources = DatasourcesTemplate {
        name: "VictoriaMetrics",
        uid: DATASOURCE_UID,
        url: &grafana_provisioning_literal(&input.datasource_url),
        basic_auth_user: &yaml_string(&grafana_provisioning_literal(&input.datasource_user)),
        basic_auth_password_ref: &yaml_string(&provisioning_file_ref(&input.datasource_password_file)?),
        time_interval: &prometheus_duration(input.scrape_interval),
    }
    .render()
    .map_err(RenderError::template("grafana/datasources.yaml"))?;
    reparse_yaml("grafana/datasources.yaml", &datasources)?;

    let dashboards_dir = input.dashboards_dir.to_str().ok_or_else(|| {
        RenderError::unsafe_value(
            "paths.state_dir",
            &input.dashboards_dir.to_string_lossy(),
            "the path is not valid UTF-8",
        )
    })?;
    let dashboards = DashboardsTemplate { dashboards_dir: &grafana_provisioning_literal(dashboards_dir) }
        .render()
        .map_err(RenderError::template("grafana/dashboards.yaml"))?;
    reparse_yaml("grafana/dashboards.yaml", &dashboards)?;

    Ok(GrafanaFiles { ini, datasources, dashboards })
}
