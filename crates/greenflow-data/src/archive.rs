//! A run's archive: a directory of canonical part files and `manifest.json`, byte-identical for the same run from
//! any VictoriaMetrics version, named and hashed the way Nix stores it.
//!
//! ```text
//! greenflow-run-<name>-<id>/
//!   manifest.json                      the run record, selector, window, counts, each file's sha256
//!   data/<from>-<to>.jsonl.gz          the run's series, canonical (see `series` and `staging`)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use greenflow_runs::RunRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::nar::NarHash;
use crate::source::VmEndpoint;
use crate::staging::{self, FetchProgress, PartFile, Staging, Window};

/// `manifest.json`'s `format`.
pub const FORMAT: &str = "greenflow-run-archive";

/// The manifest format this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What the canonical form is, in the manifest, for whoever reads an archive without greenflow.
pub const CANONICAL_FORM: &str = "data/<from>-<to>.jsonl.gz: the samples with from <= timestamp < to (ms since \
the epoch; parts cut at whole UTC hours and halved while over 1000000 samples); gzip level 1 (zlib's deflate, as zlib-rs writes it), no name or time in the \
header; one series a line, {\"metric\":{labels},\"values\":[...],\"timestamps\":[...]}, labels in byte order, \
series ordered by label set, samples by timestamp then value, duplicates kept; finite values rounded to 15 \
significant digits, as the shortest decimal that reads back as that double, others as the strings \"+Inf\", \"-Inf\", \"NaN\"";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The manifest's format version.
    pub format_version: u32,
    /// The run, as recorded when it ended.
    pub run: RunRecord,
    /// The series selector the data was taken with.
    pub selector: String,
    /// The window the data was taken over.
    pub window: Window,
    /// The VictoriaMetrics that took the run's samples in, from the run record (`unknown` for older records).
    pub source_victoria_metrics: String,
    /// Distinct series.
    pub series: u64,
    /// Samples.
    pub samples: u64,
    /// How the data files are written.
    pub canonical_form: String,
    /// Every data file, in name order.
    pub files: Vec<PartFile>,
    /// sha256 (hex) of this manifest written with this field empty: a changed manifest shows.
    pub manifest_sha256: String,
}

impl Manifest {
    /// The manifest's text as written: pretty JSON and a newline, with `manifest_sha256` filled in.
    fn sealed(mut self) -> Result<(Self, String), ArchiveError> {
        self.manifest_sha256 = String::new();
        self.manifest_sha256 = crate::nar::hex(&Sha256::digest(self.text()?.as_bytes()));
        let text = self.text()?;
        Ok((self, text))
    }

    fn text(&self) -> Result<String, ArchiveError> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|source| ArchiveError::Json { what: "cannot write the manifest".into(), source })?;
        text.push('\n');
        Ok(text)
    }
}

/// The selector of a run's samples.
pub fn run_selector(record: &RunRecord) -> String {
    format!("{{greenflow_run=\"{}\"}}", record.id)
}

/// The archive's directory and Nix store name: `greenflow-run-<name>-<id>`.
pub fn archive_name(record: &RunRecord) -> String {
    format!("greenflow-run-{}-{}", record.name, record.id)
}

/// A finished archive.
#[derive(Debug, Clone)]
pub struct Archive {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The NAR hash of the directory.
    pub nar: NarHash,
    /// The store path Nix gives it (`nix-store --add-fixed --recursive sha256 DIR`).
    pub store_path: String,
}

impl Archive {
    fn of(dir: PathBuf, manifest: Manifest) -> Result<Self, ArchiveError> {
        let nar = NarHash::of_path(&dir).map_err(ArchiveError::io("cannot hash", &dir))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let store_path = nar.fixed_output_store_path(&name);
        Ok(Self { dir, manifest, nar, store_path })
    }
}

/// What `create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Fetched and written now.
    New,
    /// Continued an interrupted fetch.
    Resumed,
    /// An intact archive of the run was there already.
    Existing,
}

/// Takes the run's data over `window` from `source` into `<out>/<archive_name>`, through a staging directory
/// (`<out>/.<archive_name>.partial`) that resumes an interrupted run of this. An intact archive already there is
/// kept; anything else there is refused.
pub async fn create(
    source: &VmEndpoint,
    record: &RunRecord,
    window: Window,
    out: &Path,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<(Archive, Created), ArchiveError> {
    let name = archive_name(record);
    let dir = out.join(&name);
    if dir.exists() {
        let manifest = verify(&dir)?;
        if manifest.run.id != record.id || manifest.window != window {
            return Err(ArchiveError::Tampered {
                dir: dir.clone(),
                file: "manifest.json".into(),
                problem: "is of another run or window than asked for; choose another --out".into(),
            });
        }
        return Ok((Archive::of(dir, manifest)?, Created::Existing));
    }
    let partial = out.join(format!(".{name}.partial"));
    let selector = run_selector(record);
    let mut staging = Staging::open(&partial, &selector, window)?;
    let created = if staging.resumed() { Created::Resumed } else { Created::New };
    staging.fetch_all(source, progress).await?;
    let parts = staging.finish()?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        run: record.clone(),
        selector,
        window,
        source_victoria_metrics: record.versions.get("victoria-metrics").cloned().unwrap_or_else(|| "unknown".into()),
        series: staging::count_series(&partial, &parts)?,
        samples: parts.iter().map(|p| p.samples).sum(),
        canonical_form: CANONICAL_FORM.into(),
        files: parts,
        manifest_sha256: String::new(),
    };
    let (manifest, text) = manifest.sealed()?;
    let path = partial.join("manifest.json");
    fs::write(&path, text).map_err(ArchiveError::io("cannot write", &path))?;
    fs::rename(&partial, &dir).map_err(ArchiveError::io("cannot move the finished archive to", &dir))?;
    Ok((Archive::of(dir, manifest)?, created))
}

/// Checks an archive: the manifest reads and seals, every file it names is there with its size and sha256, no
/// other file is there, and the counts add up. Returns the manifest.
pub fn verify(dir: &Path) -> Result<Manifest, ArchiveError> {
    let tampered =
        |file: &str, problem: String| ArchiveError::Tampered { dir: dir.to_owned(), file: file.into(), problem };
    let path = dir.join("manifest.json");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(tampered("manifest.json", "is missing (is this a greenflow archive directory?)".into()));
        }
        Err(e) => return Err(ArchiveError::Io { action: "cannot read", path, source: e }),
    };
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| tampered("manifest.json", format!("is not a manifest: {e}")))?;
    if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
        return Err(tampered(
            "manifest.json",
            format!(
                "is format {} version {}; this greenflow reads {FORMAT} up to {FORMAT_VERSION}",
                manifest.format, manifest.format_version
            ),
        ));
    }
    let (resealed, retext) = manifest.clone().sealed()?;
    if resealed.manifest_sha256 != manifest.manifest_sha256 || retext != text {
        return Err(tampered("manifest.json", "was edited (its manifest_sha256 no longer matches it)".into()));
    }
    let mut expected = std::collections::BTreeSet::from(["manifest.json".to_owned()]);
    for file in &manifest.files {
        if file.path.contains("..") || !file.path.starts_with("data/") {
            return Err(tampered(&file.path, "is outside the archive's data/".into()));
        }
        let (sha256, bytes) = match staging::file_sha256(&dir.join(&file.path)) {
            Ok(found) => found,
            Err(ArchiveError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(tampered(&file.path, "is missing".into()));
            }
            Err(e) => return Err(e),
        };
        if bytes != file.bytes || sha256 != file.sha256 {
            return Err(tampered(
                &file.path,
                format!(
                    "has sha256 {sha256} ({bytes} bytes); the manifest says {} ({} bytes)",
                    file.sha256, file.bytes
                ),
            ));
        }
        expected.insert(file.path.clone());
    }
    if manifest.samples != manifest.files.iter().map(|f| f.samples).sum::<u64>() {
        return Err(tampered("manifest.json", "counts samples other than its files do".into()));
    }
    for found in walk(dir)? {
        if !expected.contains(&found) {
            return Err(tampered(&found, "is not in the manifest".into()));
        }
    }
    Ok(manifest)
}

/// Every non-directory under `dir`, relative, with `/`.
fn walk(dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let here = dir.join(&relative);
        for entry in fs::read_dir(&here).map_err(ArchiveError::io("cannot list", &here))? {
            let entry = entry.map_err(ArchiveError::io("cannot list", &here))?;
            let path = relative.join(entry.file_name());
            if entry.file_type().map_err(ArchiveError::io("cannot list", &here))?.is_dir() {
                stack.push(path);
            } else {
                found.push(path.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Re-opens an intact archive (verified) with its NAR hash.
pub fn open(dir: &Path) -> Result<Archive, ArchiveError> {
    let manifest = verify(dir)?;
    Archive::of(dir.to_owned(), manifest)
}
