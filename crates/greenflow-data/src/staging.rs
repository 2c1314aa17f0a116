//! Fetching a run's series from VictoriaMetrics into canonical part files, with a checkpoint so that an
//! interrupted fetch resumes where it stopped.
//!
//! The window is cut at whole UTC hours (`PART_SPAN_MS`); a part that holds more than `MAX_PART_SAMPLES` samples
//! is halved until it does not. Both rules depend only on the window and the data, so any VictoriaMetrics gives the
//! same parts; memory stays at one part's samples whatever the run's size. Each part is one file,
//! `data/<from ms>-<to ms>.jsonl.gz` (13 digits each, so names sort by time): its series in canonical form
//! ([`crate::series`]), gzip level 1 (zlib-rs) with no name and time in the header. A part with no samples has no file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::series::{self, Labels, Sample, ValueSpelling};
use crate::source::VmEndpoint;

/// Parts never span more than this (one hour), and start and end on its multiples.
pub const PART_SPAN_MS: i64 = 3_600_000;

/// A part holding more samples than this is halved.
pub const MAX_PART_SAMPLES: u64 = 1_000_000;

/// The name of the checkpoint file in a staging directory.
pub const CHECKPOINT: &str = "checkpoint.json";

/// A time window, milliseconds since the epoch, `from` included and `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in it.
    pub from_ms: i64,
    /// First millisecond after it.
    pub to_ms: i64,
}

impl Window {
    /// The window's length in milliseconds.
    pub fn span_ms(&self) -> i64 {
        self.to_ms - self.from_ms
    }

    /// The window cut at whole multiples of [`PART_SPAN_MS`].
    fn hour_parts(&self) -> Vec<(i64, i64)> {
        let mut parts = Vec::new();
        let mut from = self.from_ms;
        while from < self.to_ms {
            let next = (from.div_euclid(PART_SPAN_MS) + 1) * PART_SPAN_MS;
            let to = next.min(self.to_ms);
            parts.push((from, to));
            from = to;
        }
        parts
    }
}

/// One written part file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartFile {
    /// Path relative to the staging (or archive) directory: `data/<from>-<to>.jsonl.gz`.
    pub path: String,
    /// First millisecond of the part.
    pub from_ms: i64,
    /// First millisecond after the part.
    pub to_ms: i64,
    /// Series in the part.
    pub series: u64,
    /// Samples in the part.
    pub samples: u64,
    /// The file's size.
    pub bytes: u64,
    /// The file's sha256, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    format_version: u32,
    selector: String,
    window: Window,
    /// Parts written, in time order.
    done: Vec<PartFile>,
    /// Ranges still to fetch, in time order.
    todo: Vec<(i64, i64)>,
}

/// How far a fetch has come.
#[derive(Debug, Clone, Copy)]
pub struct FetchProgress {
    /// Milliseconds of the window fetched.
    pub done_ms: i64,
    /// The window's length.
    pub total_ms: i64,
    /// Samples written so far.
    pub samples: u64,
}

/// A directory being filled with a selector's parts over a window.
pub struct Staging {
    dir: PathBuf,
    checkpoint: Checkpoint,
    resumed: bool,
}

impl Staging {
    /// Opens `dir`: resumes the checkpoint there if it is this selector's and window's, starts afresh if there is
    /// none, refuses one of another export.
    pub fn open(dir: &Path, selector: &str, window: Window) -> Result<Self, ArchiveError> {
        let path = dir.join(CHECKPOINT);
        let fresh = Checkpoint {
            format_version: 1,
            selector: selector.to_owned(),
            window,
            done: Vec::new(),
            todo: window.hour_parts(),
        };
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found: Checkpoint = serde_json::from_str(&text).map_err(|e| ArchiveError::ForeignCheckpoint {
                    dir: dir.to_owned(),
                    reason: format!("its {CHECKPOINT} is unreadable: {e}"),
                })?;
                if found.selector != fresh.selector || found.window != fresh.window {
                    return Err(ArchiveError::ForeignCheckpoint {
                        dir: dir.to_owned(),
                        reason: format!("{} over {:?}", found.selector, found.window),
                    });
                }
                Ok(Self { dir: dir.to_owned(), checkpoint: found, resumed: true })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir.join("data")).map_err(ArchiveError::io("cannot create", dir))?;
                let staging = Self { dir: dir.to_owned(), checkpoint: fresh, resumed: false };
                staging.save()?;
                Ok(staging)
            }
            Err(e) => Err(ArchiveError::Io { action: "cannot read", path, source: e }),
        }
    }

    /// Whether an earlier, interrupted fetch is being continued.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parts written so far, in time order.
    pub fn parts(&self) -> &[PartFile] {
        &self.checkpoint.done
    }

    /// Removes the checkpoint, and any part a killed fetch left half-written, once every part is there.
    pub fn finish(self) -> Result<Vec<PartFile>, ArchiveError> {
        let data = self.dir.join("data");
        for entry in fs::read_dir(&data).map_err(ArchiveError::io("cannot list", &data))?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(entry.path()).map_err(ArchiveError::io("cannot remove", entry.path()))?;
            }
        }
        let path = self.dir.join(CHECKPOINT);
        fs::remove_file(&path).map_err(ArchiveError::io("cannot remove", path))?;
        Ok(self.checkpoint.done)
    }

    fn save(&self) -> Result<(), ArchiveError> {
        let path = self.dir.join(CHECKPOINT);
        let tmp = self.dir.join(format!("{CHECKPOINT}.tmp"));
        let text = serde_json::to_string_pretty(&self.checkpoint)
            .map_err(|source| ArchiveError::Json { what: "cannot write the checkpoint".into(), source })?;
        fs::write(&tmp, text).map_err(ArchiveError::io("cannot write", &tmp))?;
        fs::rename(&tmp, &path).map_err(ArchiveError::io("cannot write", &path))
    }

    /// Fetches every part still to do, saving the checkpoint after each.
    pub async fn fetch_all(
        &mut self,
        source: &VmEndpoint,
        progress: &mut dyn FnMut(FetchProgress),
    ) -> Result<(), ArchiveError> {
        let total_ms = self.checkpoint.window.span_ms();
        let report = |checkpoint: &Checkpoint, progress: &mut dyn FnMut(FetchProgress)| {
            let left: i64 = checkpoint.todo.iter().map(|(a, b)| b - a).sum();
            let samples = checkpoint.done.iter().map(|p| p.samples).sum();
            progress(FetchProgress { done_ms: total_ms - left, total_ms, samples });
        };
        report(&self.checkpoint, progress);
        // Samples VictoriaMetrics took in the last second or two are not readable until it flushes them.
        source.force_flush().await;
        while let Some(&(from, to)) = self.checkpoint.todo.first() {
            match fetch_part(source, &self.checkpoint.selector, from, to).await? {
                Fetched::TooMany if to - from > 1 => {
                    let mid = from + (to - from) / 2;
                    tracing::debug!(from, to, "part over {MAX_PART_SAMPLES} samples, halved");
                    self.checkpoint.todo.splice(0..1, [(from, mid), (mid, to)]);
                }
                Fetched::TooMany => unreachable!("a one-millisecond part is never refused"),
                Fetched::Series(series) => {
                    self.checkpoint.todo.remove(0);
                    if !series.is_empty() {
                        let part = write_part(&self.dir, from, to, &series)?;
                        self.checkpoint.done.push(part);
                    }
                }
            }
            self.save()?;
            report(&self.checkpoint, progress);
        }
        Ok(())
    }
}

enum Fetched {
    Series(BTreeMap<Labels, Vec<Sample>>),
    TooMany,
}

async fn fetch_part(source: &VmEndpoint, selector: &str, from: i64, to: i64) -> Result<Fetched, ArchiveError> {
    let mut response = source.export(selector, from, to - 1).await?;
    let limit = if to - from > 1 { MAX_PART_SAMPLES } else { u64::MAX };
    // The part is counted as it streams in and parsed only once it is known to fit: a part over the limit costs
    // only its transfer up to the limit. Lines are kept one by one (no one buffer that doubles as it grows) and
    // each is dropped as soon as it is parsed.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut samples = 0u64;
    loop {
        let chunk = response.chunk().await.map_err(|e| ArchiveError::Sink {
            what: "the export broke off",
            url: source.base().to_owned(),
            reason: e.to_string(),
        })?;
        let Some(chunk) = chunk else { break };
        let mut rest: &[u8] = &chunk;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            pending.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            samples += count_samples(&pending);
            lines.push(std::mem::take(&mut pending));
        }
        pending.extend_from_slice(rest);
        if samples > limit {
            return Ok(Fetched::TooMany);
        }
    }
    lines.push(pending);
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for line in lines {
        let line = std::str::from_utf8(&line).map_err(|e| ArchiveError::BadExport {
            reason: format!("not UTF-8: {e}"),
            excerpt: String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned(),
        })?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (labels, new) = series::parse_line(line)?;
        series.entry(labels).or_default().extend(new);
    }
    if series.values().map(|s| s.len() as u64).sum::<u64>() > limit {
        return Ok(Fetched::TooMany);
    }
    for samples in series.values_mut() {
        series::sort_samples(samples);
    }
    Ok(Fetched::Series(series))
}

/// Samples in an exported line, counted without parsing it: the commas of its `timestamps` array, plus one.
pub(crate) fn count_samples(line: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"timestamps\":[";
    let Some(at) = memchr::memmem::rfind(line, KEY) else { return 0 };
    let list = &line[at + KEY.len()..];
    let list = &list[..memchr::memchr(b']', list).unwrap_or(list.len())];
    if list.iter().all(u8::is_ascii_whitespace) { 0 } else { memchr::memchr_iter(b',', list).count() as u64 + 1 }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_part(
    dir: &Path,
    from: i64,
    to: i64,
    series: &BTreeMap<Labels, Vec<Sample>>,
) -> Result<PartFile, ArchiveError> {
    let relative = format!("data/{from:013}-{to:013}.jsonl.gz");
    let path = dir.join(&relative);
    let tmp = dir.join(format!("{relative}.tmp"));
    let file = fs::File::create(&tmp).map_err(ArchiveError::io("cannot create", &tmp))?;
    let hashing = Hashing { inner: std::io::BufWriter::new(file), hasher: Sha256::new(), bytes: 0 };
    let mut gz = flate2::GzBuilder::new().mtime(0).operating_system(255).write(hashing, Compression::new(1));
    let mut samples = 0u64;
    let written: std::io::Result<()> = (|| {
        for (labels, values) in series {
            samples += values.len() as u64;
            gz.write_all(series::render_line(labels, values, ValueSpelling::Canonical).as_bytes())?;
            gz.write_all(b"\n")?;
        }
        Ok(())
    })();
    written.map_err(ArchiveError::io("cannot write", &tmp))?;
    let mut hashing = gz.finish().map_err(ArchiveError::io("cannot write", &tmp))?;
    hashing.flush().map_err(ArchiveError::io("cannot write", &tmp))?;
    hashing.inner.get_ref().sync_all().map_err(ArchiveError::io("cannot write", &tmp))?;
    fs::rename(&tmp, &path).map_err(ArchiveError::io("cannot write", &path))?;
    Ok(PartFile {
        path: relative,
        from_ms: from,
        to_ms: to,
        series: series.len() as u64,
        samples,
        bytes: hashing.bytes,
        sha256: crate::nar::hex(&hashing.hasher.finalize()),
    })
}

/// Reads a part file's lines (decompressed), one series each.
pub fn read_part(path: &Path) -> Result<impl Iterator<Item = std::io::Result<String>>, ArchiveError> {
    use std::io::BufRead;
    let file = fs::File::open(path).map_err(ArchiveError::io("cannot read", path))?;
    Ok(std::io::BufReader::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))).lines())
}

/// Counts distinct series over parts (a series appears once in each part it has samples in).
pub fn count_series(dir: &Path, parts: &[PartFile]) -> Result<u64, ArchiveError> {
    let mut seen = std::collections::HashSet::new();
    for part in parts {
        let path = dir.join(&part.path);
        for line in read_part(&path)? {
            let line = line.map_err(ArchiveError::io("cannot read", &path))?;
            let key = line.split(",\"values\":").next().unwrap_or_default();
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            seen.insert(u128::from_le_bytes(digest[..16].try_into().unwrap_or_default()));
        }
    }
    Ok(seen.len() as u64)
}

/// The sha256 (hex) and size of a file.
pub fn file_sha256(path: &Path) -> Result<(String, u64), ArchiveError> {
    let mut file = fs::File::open(path).map_err(ArchiveError::io("cannot read", path))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(ArchiveError::io("cannot read", path))?;
    Ok((crate::nar::hex(&hasher.finalize()), bytes))
}
