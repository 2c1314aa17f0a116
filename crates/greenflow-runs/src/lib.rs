//! greenflow's runs.
//!
//! A run is one experiment's window of metrics, identified by a sortable unique id that every sample carries as the
//! `greenflow_run` label. This crate holds the run lifecycle ([`lifecycle`]: preflight, lock, scale up, workload,
//! drain, scale down, record) written once against the [`ClusterBackend`] trait, the `local` back-end (a Prometheus
//! agent and node-exporter on this machine), run ids and records (`runs/<id>.json`). It does not parse command lines
//! or print: progress goes through a [`Reporter`].

pub mod backend;
pub mod detached;
pub mod drain;
mod error;
mod kube_backend;
pub mod lifecycle;
mod local;
mod local_backend;
mod record;

pub use backend::{BackendError, BackendInfo, BackendKind, ClusterBackend, Progress};
pub use error::RunError;
pub use kube_backend::{KubeBackend, backend_error};
pub use lifecycle::{Interrupts, Reporter, RunContext, RunRequest, Workload};
pub use local::{LocalCluster, LocalClusterPlan, check_local_programs, sink_agent_input};
pub use local_backend::LocalBackend;
pub use record::{
    DrainOutcome, DrainReport, RUN_FORMAT_VERSION, RunId, RunProcess, RunRecord, RunStatus, RunStore, validate_name,
};

/// The external label that carries the run id.
pub const RUN_LABEL: &str = "greenflow_run";
/// The external label that carries the experiment name.
pub const EXPERIMENT_LABEL: &str = "greenflow_experiment";
