//! greenflow's runs.
//!
//! A run is one experiment's window of metrics, identified by a sortable unique id that every sample carries as the
//! `greenflow_run` label. This crate makes run ids, keeps run records (`runs/<id>.json`), and provides the local
//! stand-in cluster (a Prometheus agent and node-exporter on this machine) that `greenflow demo` uses. It does not
//! parse command lines or print.

pub mod drain;
mod error;
mod local;
mod record;

pub use error::RunError;
pub use local::{LocalCluster, LocalClusterPlan};
pub use record::{RUN_FORMAT_VERSION, RunId, RunRecord, RunStatus, RunStore, validate_name};

/// The external label that carries the run id.
pub const RUN_LABEL: &str = "greenflow_run";
/// The external label that carries the experiment name.
pub const EXPERIMENT_LABEL: &str = "greenflow_experiment";
