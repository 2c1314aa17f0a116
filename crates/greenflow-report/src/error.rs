//! What can go wrong while building a report.

use std::path::PathBuf;

use greenflow_data::ArchiveError;
use greenflow_sink::SinkError;

/// A report that could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The sink (or the scratch VictoriaMetrics holding an archive) refused or failed a query.
    #[error("{0}")]
    Sink(#[from] SinkError),
    /// An archive could not be read or loaded.
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    /// The scratch VictoriaMetrics for archives did not come up.
    #[error("the scratch VictoriaMetrics for the archives did not answer within {seconds} s; its log: {}", log.display())]
    ScratchNotReady {
        /// How long it was given.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
    },
    /// A file of the report could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("cannot draw the plot `{}`: {reason}", path.display())]
    Plot {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A run still running has no window to report on.
    #[error("run {run} has not ended; report on it once it has (greenflow runs recover finishes an interrupted one)")]
    NotEnded {
        /// The run id.
        run: String,
    },
}

impl ReportError {
    /// A closure that turns an I/O error on `path` into [`ReportError::Write`].
    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Write { path: path.to_owned(), source }
    }
}
