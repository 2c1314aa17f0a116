//! greenflow's local sink.
//!
//! Runs VictoriaMetrics (storage), Caddy (reverse proxy with basic auth, TLS for a public name) and, when it is
//! installed, Grafana as supervised child processes on 127.0.0.1; publishes their state for `sink status`; and talks
//! to VictoriaMetrics over HTTP. It does not know about clusters or runs.

mod binaries;
mod client;
mod error;
mod files;
mod layout;
mod render;
mod runtime;
mod status;
pub mod supervisor;
mod tailnet;
pub mod versions;
pub mod vm_data;

pub use binaries::{Program, parse_version};
pub use client::{ImportSeries, InstantSample, RangeSeries, SinkClient, promql_string};
pub use error::SinkError;
pub use files::{dir_size, ensure_dir, load_or_generate_secret, tail_lines, write_private, write_public};
pub use layout::{
    Component, ComponentName, GrafanaAbsence, GrafanaInstall, Preflight, PreparedSink, SinkUrls, VM_ENV_FLAG_PREFIX,
    check_port_free, existing_sink_password, existing_writer_password, loopback_urls, preflight, prepare,
    reader_password, reader_password_file, sink_password, victoria_metrics_admin_key, writer_password,
    writer_password_file,
};
pub use render::{
    PASSWORD_HASH_VAR, READER_PASSWORD_HASH_VAR, RenderSecrets, RenderedConfig, WRITER_PASSWORD_HASH_VAR, render_config,
};
pub use runtime::{
    ComponentState, Health, RunningSink, STATE_FORMAT_VERSION, SinkLock, SinkPresence, SinkState, StopOutcome,
    check_health, read_state, running_supervisor, sink_presence, stop_running, unsupervised_sink_answers,
};
pub use status::{ComponentStatus, SinkStatus, sink_status};
pub use tailnet::{Funnel, tailnet_addresses};
