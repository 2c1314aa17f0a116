//! Run ids and run records (`<data>/runs/<id>.json`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::drain::QueueMetrics;
use crate::error::RunError;

/// The record format written by this version; readers refuse to rewrite newer ones.
pub const RUN_FORMAT_VERSION: u32 = 1;

/// A sortable unique run id: UTC start time to the second, then four random hex digits (`20261125T175018Z-3fa1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        let stamp = start
            .to_offset(time::UtcOffset::UTC)
            .format(format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
        Self(format!("{stamp}-{:04x}", rand::rng().random::<u16>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Still running (or greenflow died while it ran).
    Running,
    /// Ended and every sample is in the sink.
    Complete,
    /// Ended, but samples were lost on the way.
    Lossy,
    /// Ended with an error.
    Failed,
    /// Ended without waiting for the sink to have everything.
    NotDrained,
}

/// What greenflow remembers of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Format version of the record.
    pub format_version: u32,
    /// The run id (also the `greenflow_run` label).
    pub id: RunId,
    /// The experiment name (also the `greenflow_experiment` label).
    pub name: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Which back-end ran it (`local`, `kube`).
    pub backend: String,
    /// Start, UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// End, UTC; absent while running.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub end: Option<OffsetDateTime>,
    /// The labels every sample of the run carries.
    pub labels: BTreeMap<String, String>,
    /// Series of the run in the sink at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<u64>,
    /// Samples of the run in the sink at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Versions of greenflow and the programs involved.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// The command the run ran (`greenflow run NAME -- COMMAND ...`); empty for a timed or interrupted run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The command's exit status (a signal shows as 128 + its number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// How the drain went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainReport>,
    /// What went wrong, for a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The greenflow process that drives the run, so `greenflow runs recover` can tell a dead one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<RunProcess>,
    /// The remote-write queue at the run's start, the baseline for lost samples (kept for `runs recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_at_start: Option<QueueMetrics>,
    /// The cluster's Prometheus was left running (undrained queue); `greenflow runs recover` finishes the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_left_running: bool,
}

/// The process driving a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProcess {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

/// How a run's drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainOutcome {
    /// Every sample up to the end is in the sink.
    Drained,
    /// Samples were lost (failed or dropped).
    Lossy,
    /// The drain timeout passed with samples still queued.
    TimedOut,
    /// Skipped: a second Ctrl-C, `--force`, or nothing to drain.
    Skipped,
}

/// The drain's result, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainReport {
    /// How it ended.
    pub outcome: DrainOutcome,
    /// Seconds from the run's end to the end of the drain.
    pub seconds: f64,
    /// Samples that failed for good during the run (e.g. refused with 401).
    pub samples_failed: u64,
    /// Samples dropped during the run.
    pub samples_dropped: u64,
    /// Newest sample of the run in the sink at the end, seconds before the run's end (negative: after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_behind_seconds: Option<f64>,
    /// Why it ended so, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The folder of run records.
#[derive(Debug, Clone)]
pub struct RunStore {
    dir: PathBuf,
}

impl RunStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of a run.
    pub fn path(&self, id: &RunId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes (or rewrites) a record, atomically; refuses to overwrite a record of a newer format.
    pub fn save(&self, record: &RunRecord) -> Result<PathBuf, RunError> {
        let path = self.path(&record.id);
        if let Ok(existing) = self.load_file(&path)
            && existing.format_version > RUN_FORMAT_VERSION
        {
            return Err(RunError::NewerFormat { path, found: existing.format_version, supported: RUN_FORMAT_VERSION });
        }
        let text = serde_json::to_string_pretty(record).map_err(|e| RunError::Record {
            action: "encode",
            path: path.clone(),
            source: e.into(),
        })?;
        greenflow_sink::write_public(&path, &(text + "\n"))?;
        Ok(path)
    }

    fn load_file(&self, path: &Path) -> Result<RunRecord, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::Record {
            action: "read",
            path: path.to_owned(),
            source: e.into(),
        })?;
        serde_json::from_str(&text).map_err(|e| RunError::Record {
            action: "parse",
            path: path.to_owned(),
            source: e.into(),
        })
    }

    /// Every readable record, newest first.
    pub fn list(&self) -> Result<Vec<RunRecord>, RunError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RunError::Record { action: "list", path: self.dir.clone(), source: e.into() }),
        };
        let mut records: Vec<RunRecord> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
            .filter_map(|p| match self.load_file(&p) {
                Ok(record) => Some(record),
                Err(err) => {
                    tracing::warn!(error = %err, "skipping unreadable run record");
                    None
                }
            })
            .collect();
        records.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(records)
    }
}

/// Checks a run name: it becomes a label value and part of file names.
pub fn validate_name(name: &str) -> Result<(), RunError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(RunError::BadName { name: name.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> RunRecord {
        RunRecord {
            format_version: RUN_FORMAT_VERSION,
            id: RunId(id.into()),
            name: "demo".into(),
            status: RunStatus::Complete,
            backend: "local".into(),
            start: OffsetDateTime::UNIX_EPOCH,
            end: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(60)),
            labels: BTreeMap::from([("greenflow_run".into(), id.into())]),
            series: Some(3),
            samples: Some(30),
            versions: BTreeMap::new(),
            command: vec!["sleep".into(), "1".into()],
            exit_status: Some(0),
            drain: Some(DrainReport {
                outcome: DrainOutcome::Drained,
                seconds: 6.5,
                samples_failed: 0,
                samples_dropped: 0,
                sink_behind_seconds: Some(1.0),
                detail: None,
            }),
            error: None,
            process: Some(RunProcess { host: "laptop".into(), pid: 42 }),
            queue_at_start: Some(QueueMetrics::default()),
            cluster_left_running: false,
        }
    }

    #[test]
    fn ids_sort_by_start_time() {
        let early = RunId::new(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1));
        let late = RunId::new(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(2));
        assert!(early < late, "{early} < {late}");
        assert!(early.as_str().starts_with("19700101T000001Z-"));
    }

    #[test]
    fn records_round_trip_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        store.save(&record("20260101T000000Z-0001")).unwrap();
        store.save(&record("20260102T000000Z-0001")).unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id.as_str(), "20260102T000000Z-0001");
        assert_eq!(listed[1], record("20260101T000000Z-0001"));
    }

    #[test]
    fn newer_records_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let mut newer = record("20260101T000000Z-0001");
        newer.format_version = RUN_FORMAT_VERSION + 1;
        std::fs::write(store.path(&newer.id), serde_json::to_string(&newer).unwrap()).unwrap();
        assert!(matches!(store.save(&record("20260101T000000Z-0001")), Err(RunError::NewerFormat { .. })));
    }

    #[test]
    fn names_must_be_label_friendly() {
        assert!(validate_name("kafka-vs-redpanda_1.2").is_ok());
        for bad in ["", "a b", "x\"y", "é", &"a".repeat(101)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
