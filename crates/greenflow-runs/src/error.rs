//! Errors of runs and records.

use std::path::PathBuf;

/// Why a run operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sink side failed (files, processes, HTTP).
    #[error(transparent)]
    Sink(#[from] greenflow_sink::SinkError),
    /// A generated file could not be rendered.
    #[error(transparent)]
    Render(#[from] greenflow_render::RenderError),
    /// A run record could not be read or written.
    #[error("cannot {action} run record `{}`", path.display())]
    Record {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record written by a newer greenflow.
    #[error("run record `{}` has format {found}, newer than this greenflow understands ({supported}); upgrade greenflow", path.display())]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// A run name that cannot be a label value in every tool.
    #[error("run name `{}` is not valid: use 1 to 100 letters, digits, '-', '_' or '.'", name.escape_debug())]
    BadName {
        /// The name given.
        name: String,
    },
    /// The cluster back-end refused or failed (nothing was changed).
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The preflight probe write or read-back through the sink's address failed.
    #[error("the sink at {url} failed the preflight probe: {detail}")]
    Probe {
        /// The sink's address.
        url: String,
        /// What happened, with the fix.
        detail: String,
    },
    /// The local stand-in cluster's background supervisor failed.
    #[error("the local cluster: {detail}")]
    LocalCluster {
        /// What happened.
        detail: String,
    },
    /// The run happened (the cluster was changed and its data is in the sink) but its final record could not be
    /// written: the record on disk still says what it said before, so the caller reports the one given here.
    #[error("the run record of {} could not be saved: {source}", record.id)]
    NotSaved {
        /// The finished record, as it would have been saved.
        record: Box<crate::RunRecord>,
        /// Why it was not.
        source: Box<RunError>,
    },
    /// A stop request (Ctrl-C, SIGTERM) before the run changed anything.
    #[error("interrupted while {during}; nothing was changed")]
    Interrupted {
        /// The step that was stopped.
        during: &'static str,
    },
    /// No free port on loopback.
    #[error("cannot find a free port on 127.0.0.1")]
    NoFreePort(#[source] std::io::Error),
}
