//! Loading an archive into a VictoriaMetrics through its JSON-lines import API (every version reads it), then
//! taking the run back out and comparing it with the manifest.

use std::path::Path;
use std::time::Duration;

use crate::archive::{self, Manifest};
use crate::error::ArchiveError;
use crate::series::{self, ValueSpelling};
use crate::source::VmEndpoint;
use crate::staging::{PartFile, Staging};

/// Import bodies are cut at about this many bytes.
const BODY_BYTES: usize = 8 << 20;

/// How an import ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The data was written, and the sink's copy of the run now hashes to the manifest.
    Written,
    /// The data was written; the sink gives it back with the same series and timestamps, but `values` values
    /// re-rounded by VictoriaMetrics' decimal storage (within 1e-12 of their series' largest magnitude).
    WrittenRounded {
        /// How many values differ from the archive's.
        values: u64,
    },
    /// The sink held exactly the archive's data already; nothing was written.
    AlreadyThere,
}

/// Verifies the archive (nothing is written if it is not intact), then [`import_verified`].
pub async fn import(dir: &Path, target: &VmEndpoint, merge: bool) -> Result<(Manifest, Imported), ArchiveError> {
    let manifest = archive::verify(dir)?;
    import_verified(dir, manifest, target, merge).await
}

/// Writes the data of an archive that [`archive::verify`] passed (its manifest) unless the sink holds it already,
/// then checks that the sink's copy of the run is the archive's, file for file. With `merge`, a sink that holds
/// part of the run takes the rest (right only when it deduplicates); without, that is refused.
pub async fn import_verified(
    dir: &Path,
    manifest: Manifest,
    target: &VmEndpoint,
    merge: bool,
) -> Result<(Manifest, Imported), ArchiveError> {
    let (_scratch, held) = snapshot(target, &manifest).await?;
    if same(&held, &manifest.files) {
        return Ok((manifest, Imported::AlreadyThere));
    }
    let held_samples: u64 = held.iter().map(|p| p.samples).sum();
    if held_samples > 0 && !merge {
        return Err(ArchiveError::Overlap {
            run: manifest.run.id.to_string(),
            samples: held_samples,
            expected: manifest.samples,
            selector: manifest.selector.clone(),
        });
    }
    for file in &manifest.files {
        let path = dir.join(&file.path);
        let mut body = Vec::with_capacity(BODY_BYTES + (1 << 16));
        for line in crate::staging::read_part(&path)? {
            let line = line.map_err(ArchiveError::io("cannot read", &path))?;
            // A canonical line is an import line already, but for the infinities, which VictoriaMetrics 1.79 reads
            // only as numbers (and NaN, which it drops either way).
            if line.contains("\"+Inf\"") || line.contains("\"-Inf\"") {
                let (labels, samples) = series::parse_line(&line)?;
                body.extend_from_slice(series::render_line(&labels, &samples, ValueSpelling::Import).as_bytes());
            } else {
                body.extend_from_slice(line.as_bytes());
            }
            body.push(b'\n');
            if body.len() >= BODY_BYTES {
                target.import(std::mem::take(&mut body)).await?;
            }
        }
        if !body.is_empty() {
            target.import(body).await?;
        }
    }
    // VictoriaMetrics makes what it took readable within a second or so; force_flush asks for it now.
    let mut last = Vec::new();
    for _ in 0..30 {
        target.force_flush().await;
        let (scratch, parts) = snapshot(target, &manifest).await?;
        if same(&parts, &manifest.files) {
            return Ok((manifest, Imported::Written));
        }
        // VictoriaMetrics keeps a block of values as decimals with one exponent, so a value can come back
        // re-rounded when the block it lands in differs from the one it left.
        if let Some(values) = rounded_values(dir, &manifest.files, scratch.path(), &parts)? {
            return Ok((manifest, Imported::WrittenRounded { values }));
        }
        last = parts;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(ArchiveError::Sink {
        what: "the imported run does not read back as the archive",
        url: target.base().to_owned(),
        reason: format!(
            "the sink holds {} samples of it, the archive {}; a sink without -dedup.minScrapeInterval keeps samples \
             it is given twice",
            last.iter().map(|p| p.samples).sum::<u64>(),
            manifest.samples
        ),
    })
}

/// The run's data as the target holds it now, fetched into a scratch directory (removed when dropped).
pub async fn snapshot(
    target: &VmEndpoint,
    manifest: &Manifest,
) -> Result<(tempfile::TempDir, Vec<PartFile>), ArchiveError> {
    let scratch =
        tempfile::tempdir().map_err(ArchiveError::io("cannot create a scratch directory in", std::env::temp_dir()))?;
    let mut staging = Staging::open(scratch.path(), &manifest.selector, manifest.window)?;
    staging.fetch_all(target, &mut |_| {}).await?;
    let parts = staging.finish()?;
    Ok((scratch, parts))
}

/// When both sets of parts hold the same series, timestamps and sample counts, and every value is within 1e-12 of
/// its series' largest magnitude of the other's: how many values differ. `None` otherwise.
fn rounded_values(a_dir: &Path, a: &[PartFile], b_dir: &Path, b: &[PartFile]) -> Result<Option<u64>, ArchiveError> {
    let shape = |p: &PartFile| (p.path.clone(), p.series, p.samples);
    if a.iter().map(shape).ne(b.iter().map(shape)) {
        return Ok(None);
    }
    let mut differing = 0;
    for (x, y) in a.iter().zip(b) {
        let (x_path, y_path) = (a_dir.join(&x.path), b_dir.join(&y.path));
        for (x_line, y_line) in crate::staging::read_part(&x_path)?.zip(crate::staging::read_part(&y_path)?) {
            let x_line = x_line.map_err(ArchiveError::io("cannot read", &x_path))?;
            let y_line = y_line.map_err(ArchiveError::io("cannot read", &y_path))?;
            let ((x_labels, xs), (y_labels, ys)) = (series::parse_line(&x_line)?, series::parse_line(&y_line)?);
            if x_labels != y_labels || xs.len() != ys.len() {
                return Ok(None);
            }
            let magnitude = xs.iter().chain(&ys).map(|s| s.1.abs()).filter(|v| v.is_finite()).fold(0.0, f64::max);
            for (&(xt, xv), &(yt, yv)) in xs.iter().zip(&ys) {
                if xt != yt {
                    return Ok(None);
                }
                if xv.to_bits() == yv.to_bits() || (xv.is_nan() && yv.is_nan()) {
                    continue;
                }
                if !(xv.is_finite() && yv.is_finite() && (xv - yv).abs() <= 1e-12 * magnitude) {
                    return Ok(None);
                }
                differing += 1;
            }
        }
    }
    Ok(Some(differing))
}

fn same(a: &[PartFile], b: &[PartFile]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.path == y.path && x.sha256 == y.sha256)
}
