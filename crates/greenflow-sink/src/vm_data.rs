//! What last wrote VictoriaMetrics' data directory, so that an older VictoriaMetrics is never started on data it
//! cannot read.
//!
//! VictoriaMetrics reads the data of older releases but not of newer ones: a directory written by 1.145 makes 1.79
//! exit with "cannot parse path to part" (a NixOS rollback, or a laptop with two installs). greenflow records the
//! release that last ran on the directory in `greenflow-writer.json` beside VictoriaMetrics' own files, and refuses
//! to start a release that is certainly older, before anything starts and without touching the data.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SinkError;
use crate::files::write_public;
use crate::versions::{Release, Version};

/// The record's file name inside the data directory.
pub const WRITER_FILE: &str = "greenflow-writer.json";

/// What `greenflow-writer.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataWriter {
    /// Format version of this file.
    pub format_version: u32,
    /// The release that last ran on the directory.
    pub release: Release,
    /// Its binary.
    pub binary: PathBuf,
}

/// The recorded last writer of the data directory, if there is a record.
pub fn last_writer(data: &Path) -> Option<DataWriter> {
    let text = std::fs::read_to_string(data.join(WRITER_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What VictoriaMetrics' own layout tells of a directory without a record: 1.90 and later keep a `parts.json` in
/// each partition (`data/small/<YYYY_MM>/parts.json`; `lib/storage/partition.go`), older releases do not.
fn writer_from_layout(data: &Path) -> Option<DataWriter> {
    let partitions = std::fs::read_dir(data.join("data/small")).ok()?;
    let newer = partitions.flatten().any(|p| p.path().join("parts.json").is_file());
    newer.then(|| DataWriter {
        format_version: 1,
        release: Release::Inferred { at_least: Version::new(1, 90, 0), below: None, evidence: None },
        binary: PathBuf::from("(unknown: told by the directory's layout, parts.json)"),
    })
}

/// Fails when `release` is certainly older than what last wrote `data`.
pub fn check_data_writer(data: &Path, binary: &Path, release: &Release) -> Result<(), SinkError> {
    let Some(writer) = last_writer(data).or_else(|| writer_from_layout(data)) else { return Ok(()) };
    let Some(written_by) = writer.release.at_least() else { return Ok(()) };
    if release.certainly_below(written_by) {
        return Err(SinkError::DataFromNewerVictoriaMetrics {
            data: data.to_owned(),
            written_by: writer.release.describe(),
            written_binary: writer.binary,
            found: release.describe(),
            binary: binary.to_owned(),
        });
    }
    Ok(())
}

/// Records `release` as the last writer of `data`, unless a newer release is already recorded.
pub fn record_data_writer(data: &Path, binary: &Path, release: &Release) -> Result<(), SinkError> {
    if let Some(previous) = last_writer(data)
        && let (Some(before), Some(now)) = (previous.release.at_least(), release.at_least())
        && before > now
    {
        return Ok(());
    }
    let writer = DataWriter { format_version: 1, release: release.clone(), binary: binary.to_owned() };
    write_public(&data.join(WRITER_FILE), &serde_json::to_string_pretty(&writer).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(version: Version) -> Release {
        Release::Reported { version, text: version.to_string() }
    }

    #[test]
    fn an_older_release_is_refused_on_newer_data_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let binary = Path::new("/nix/store/x-victoriametrics/bin/victoria-metrics");
        let new = reported(Version::new(1, 145, 0));
        let old =
            Release::Inferred { at_least: Version::new(1, 79, 0), below: Some(Version::new(1, 83, 0)), evidence: None };
        check_data_writer(dir.path(), binary, &new).unwrap();
        record_data_writer(dir.path(), binary, &new).unwrap();
        let before = std::fs::read(dir.path().join(WRITER_FILE)).unwrap();
        let err = check_data_writer(dir.path(), Path::new("/usr/bin/victoria-metrics"), &old).unwrap_err().to_string();
        assert!(err.contains("(1.145.0,") && err.contains("(>=1.79.0, <1.83.0 by its -help flags)"), "{err}");
        assert!(err.contains("sink.victoria_metrics.binary") && err.contains("paths.data_dir"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        assert_eq!(std::fs::read(dir.path().join(WRITER_FILE)).unwrap(), before);
        // The same or a newer release is fine, and an older one never overwrites a newer record.
        check_data_writer(dir.path(), binary, &reported(Version::new(1, 146, 0))).unwrap();
        record_data_writer(dir.path(), binary, &old).unwrap();
        assert_eq!(last_writer(dir.path()).unwrap().release, new);
    }

    #[test]
    fn a_directory_without_a_record_is_judged_by_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        let old =
            Release::Inferred { at_least: Version::new(1, 79, 0), below: Some(Version::new(1, 83, 0)), evidence: None };
        // As 1.79 lays it out: part directories named by counts and times, no parts.json.
        std::fs::create_dir_all(
            dir.path().join("data/small/2026_12/1_1_20261201212455.522_20261201212455.522_18ED3E45B72ABBA8"),
        )
        .unwrap();
        check_data_writer(dir.path(), Path::new("vm"), &old).unwrap();
        // As 1.90 and later lay it out.
        std::fs::write(dir.path().join("data/small/2026_12/parts.json"), r#"{"Small":["18ED3E4505162E91"],"Big":[]}"#)
            .unwrap();
        let err = check_data_writer(dir.path(), Path::new("vm"), &old).unwrap_err().to_string();
        assert!(err.contains(">=1.90.0"), "{err}");
        check_data_writer(dir.path(), Path::new("vm"), &reported(Version::new(1, 145, 0))).unwrap();
    }

    #[test]
    fn an_unknown_release_is_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        record_data_writer(dir.path(), Path::new("vm"), &reported(Version::new(1, 145, 0))).unwrap();
        check_data_writer(dir.path(), Path::new("vm"), &Release::Unknown).unwrap();
    }
}
