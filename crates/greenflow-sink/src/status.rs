//! `sink status`: what runs, whether it answers, what it holds.

use std::path::PathBuf;

use greenflow_config::Settings;
use serde::Serialize;

use crate::binaries::Program;
use crate::files::dir_size;
use crate::layout::{ComponentName, GrafanaAbsence, SinkUrls, existing_sink_password, known, loopback_urls};
use crate::runtime::{check_health, probe_component, read_state, running_supervisor, unsupervised_sink_answers};
use crate::versions;

/// The sink as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    /// Whether the sink runs (supervised by greenflow, or answering on its ports under a service manager).
    pub running: bool,
    /// Who runs it: `greenflow` (`sink up`, `demo`) or `unsupervised` (the NixOS or home-manager module's services,
    /// or anything else answering on the configured ports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<&'static str>,
    /// That process' pid.
    pub supervisor_pid: Option<u32>,
    /// Whether it runs detached.
    pub detached: Option<bool>,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// Each component.
    pub components: Vec<ComponentStatus>,
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// Bytes under the data directory.
    pub data_size_bytes: u64,
    /// VictoriaMetrics' retention period.
    pub retention: String,
    /// Loopback URLs.
    pub urls: SinkUrls,
}

/// One component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    /// Which one.
    pub name: ComponentName,
    /// Whether the sink needs it (Grafana is optional).
    pub required: bool,
    /// Whether its binary was found.
    pub installed: bool,
    /// Whether its process runs.
    pub running: bool,
    /// Its pid.
    pub pid: Option<u32>,
    /// Whether it answered its health check (`None` when it does not run).
    pub healthy: Option<bool>,
    /// Its version, when known.
    pub version: Option<String>,
    /// Where it listens.
    pub listen: String,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Why it is unhealthy or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SinkStatus {
    /// True when the sink runs and every running component is healthy and every required one runs.
    pub fn is_ok(&self) -> bool {
        self.running
            && self
                .components
                .iter()
                .all(|c| if c.required { c.healthy == Some(true) } else { c.healthy != Some(false) })
    }
}

/// Gathers the sink's status. Never fails: what cannot be learnt is reported as such.
pub async fn sink_status(settings: &Settings) -> SinkStatus {
    let sink = &settings.config.sink;
    let data_dir = settings.paths.data_dir.clone();
    let base = SinkStatus {
        running: false,
        managed_by: None,
        supervisor_pid: running_supervisor(settings),
        detached: None,
        started_at: None,
        components: Vec::new(),
        data_size_bytes: dir_size(&data_dir),
        data_dir,
        retention: sink.retention.to_string(),
        urls: loopback_urls(settings),
    };
    match read_state(settings) {
        Some(state) => {
            let password = existing_sink_password(settings);
            // Without the password (another shell), Caddy is checked for asking for one.
            let health = check_health(&state, &sink.username, password.as_ref()).await;
            let mut components: Vec<ComponentStatus> = state
                .components
                .iter()
                .map(|c| {
                    let result = health.entries().iter().find(|(name, _)| *name == c.name).map(|(_, r)| r);
                    ComponentStatus {
                        name: c.name,
                        required: c.name != ComponentName::Grafana,
                        installed: true,
                        running: c.pid.is_some(),
                        pid: c.pid,
                        healthy: Some(matches!(result, Some(Ok(())))),
                        version: c.version.clone(),
                        listen: c.listen.clone(),
                        restarts: c.restarts,
                        detail: result.and_then(|r| r.as_ref().err()).map(|e| e.to_string()),
                    }
                })
                .collect();
            if let Some(absence) = &state.grafana_absent {
                components.push(absent_grafana(settings, absence));
            }
            SinkStatus {
                running: true,
                managed_by: Some("greenflow"),
                supervisor_pid: Some(state.supervisor_pid),
                detached: Some(state.detached),
                started_at: state.started_at.format(&time::format_description::well_known::Rfc3339).ok(),
                components,
                urls: state.urls,
                ..base
            }
        }
        None if base.supervisor_pid.is_none() && unsupervised_sink_answers(settings).await => {
            unsupervised_status(settings, base).await
        }
        None => {
            let components = [
                (
                    ComponentName::VictoriaMetrics,
                    Program::VictoriaMetrics,
                    sink.victoria_metrics.binary.as_deref(),
                    sink.victoria_metrics.port,
                ),
                (ComponentName::Caddy, Program::Caddy, sink.caddy.binary.as_deref(), sink.http_port),
                (ComponentName::Grafana, Program::Grafana, sink.grafana.binary.as_deref(), sink.grafana.port),
            ]
            .into_iter()
            .map(|(name, program, configured, port)| {
                let binary = program.locate(configured, &settings.env).ok();
                ComponentStatus {
                    name,
                    required: name != ComponentName::Grafana,
                    installed: binary.is_some(),
                    running: false,
                    pid: None,
                    healthy: None,
                    version: binary.as_deref().and_then(|b| known(&versions::detect(program, b))),
                    listen: format!("127.0.0.1:{port}"),
                    restarts: 0,
                    detail: if binary.is_none() { Some("not installed".into()) } else { None },
                }
            })
            .collect();
            SinkStatus { components, ..base }
        }
    }
}

/// The status of a sink that answers on the configured ports without greenflow's supervisor: each component is
/// asked on its port; pids and restarts are the service manager's to tell.
async fn unsupervised_status(settings: &Settings, base: SinkStatus) -> SinkStatus {
    let sink = &settings.config.sink;
    let password = existing_sink_password(settings);
    let mut components = Vec::new();
    for (name, port) in [
        (ComponentName::VictoriaMetrics, sink.victoria_metrics.port),
        (ComponentName::Caddy, sink.http_port),
        (ComponentName::Grafana, sink.grafana.port),
    ] {
        let listen = format!("127.0.0.1:{port}");
        let result = probe_component(name, &listen, &base.urls, &sink.username, password.as_ref()).await;
        let required = name != ComponentName::Grafana;
        let answers = result.is_ok();
        components.push(ComponentStatus {
            name,
            required,
            installed: true,
            running: answers || required,
            pid: None,
            healthy: if answers || required { Some(answers) } else { None },
            version: None,
            listen,
            restarts: 0,
            detail: match result {
                Ok(()) => None,
                Err(_) if !required => Some("not answering".into()),
                Err(err) => Some(err.to_string()),
            },
        });
    }
    SinkStatus { running: true, managed_by: Some("unsupervised"), components, ..base }
}

fn absent_grafana(settings: &Settings, absence: &GrafanaAbsence) -> ComponentStatus {
    let detail = match absence {
        GrafanaAbsence::Disabled => "disabled (sink.grafana.enabled: false)",
        GrafanaAbsence::NotInstalled => "not installed: install Grafana (nixpkgs `grafana`) to get dashboards",
        GrafanaAbsence::NoHomepath => {
            "installed, but its home (conf/defaults.ini) was not found: set sink.grafana.homepath"
        }
    };
    ComponentStatus {
        name: ComponentName::Grafana,
        required: false,
        installed: *absence != GrafanaAbsence::NotInstalled,
        running: false,
        pid: None,
        healthy: None,
        version: None,
        listen: format!("127.0.0.1:{}", settings.config.sink.grafana.port),
        restarts: 0,
        detail: Some(detail.into()),
    }
}
