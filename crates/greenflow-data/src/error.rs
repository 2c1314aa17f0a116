//! Errors of exporting, archiving, verifying and importing runs.

use std::path::PathBuf;

/// What went wrong with a run's data.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file could not be read or written.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// VictoriaMetrics could not be reached or refused a request.
    #[error("{what} at {url}: {reason}")]
    Sink {
        /// The request, in words.
        what: &'static str,
        /// The URL, without credentials.
        url: String,
        /// Why it failed, with the fix when there is one.
        reason: String,
    },
    /// VictoriaMetrics answered with a line that is not a series.
    #[error("the sink's export has a line that is not a series ({reason}): `{excerpt}`")]
    BadExport {
        /// Why it is not one.
        reason: String,
        /// The line's start.
        excerpt: String,
    },
    /// An archive does not hold what its manifest says.
    #[error("archive `{}` is not intact: {file} {problem}; it cannot be trusted (make it again with `greenflow archive RUN`, or fetch an intact copy)", dir.display())]
    Tampered {
        /// The archive.
        dir: PathBuf,
        /// The file at fault, relative to the archive.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An export directory holds the checkpoint of a different export.
    #[error("`{}` holds an unfinished export of something else ({reason}); remove it, or choose another --out", dir.display())]
    ForeignCheckpoint {
        /// The checkpoint directory.
        dir: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The target sink already holds part of the run, not equal to the archive.
    #[error(
        "the sink already holds {samples} samples of run {run} that differ from the archive's {expected}; importing would store them twice unless the sink deduplicates. Pass --merge if it runs with -dedup.minScrapeInterval (greenflow's sink does), or delete them first (VictoriaMetrics' /api/v1/admin/tsdb/delete_series with match[]={selector})"
    )]
    Overlap {
        /// The run id.
        run: String,
        /// Samples of the run already there.
        samples: u64,
        /// Samples in the archive.
        expected: u64,
        /// The run's selector.
        selector: String,
    },
    /// JSON could not be written or read.
    #[error("{what}: {source}")]
    Json {
        /// What it was.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Parquet could not be written.
    #[error("cannot write Parquet `{}`: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        source: parquet::errors::ParquetError,
    },
}

impl ArchiveError {
    /// An I/O error with its file.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
