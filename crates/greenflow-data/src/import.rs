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
    let (scratch, held) = snapshot_with(target, &manifest, &probe_selector(&manifest.selector)).await?;
    tracing::debug!(samples = held.iter().map(|p| p.samples).sum::<u64>(), "read what the sink holds of the run");
    if same(&held, &manifest.files) {
        return Ok((manifest, Imported::AlreadyThere));
    }
    let held_samples: u64 = held.iter().map(|p| p.samples).sum();
    // A sink that holds the run as VictoriaMetrics re-rounded it on the first import holds it already.
    if held_samples > 0 && matches!(compare(dir, &manifest.files, scratch.path(), &held)?, Comparison::Rounded(_)) {
        return Ok((manifest, Imported::AlreadyThere));
    }
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
    tracing::debug!(samples = manifest.samples, "written; reading the run back");
    // VictoriaMetrics makes what it took readable within a second or so; force_flush asks for it now.
    let mut difference = String::new();
    for attempt in 0..30 {
        target.force_flush().await;
        let (scratch, parts) = snapshot(target, &manifest).await?;
        if same(&parts, &manifest.files) {
            return Ok((manifest, Imported::Written));
        }
        // VictoriaMetrics keeps a block of values as decimals with one exponent, so a value can come back
        // re-rounded when the block it lands in differs from the one it left.
        match compare(dir, &manifest.files, scratch.path(), &parts)? {
            Comparison::Rounded(values) => return Ok((manifest, Imported::WrittenRounded { values })),
            Comparison::Differs(what) => {
                tracing::debug!(attempt, %what, "the sink's copy differs yet");
                difference = what;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(ArchiveError::Sink {
        what: "the imported run does not read back as the archive",
        url: target.base().to_owned(),
        reason: format!(
            "{difference}; a sink without -dedup.minScrapeInterval keeps samples it is given twice, and one that \
             already held other samples of the run needs --merge"
        ),
    })
}

/// The manifest's selector written another way that selects the same series (every series has a name):
/// `{greenflow_run="x"}` becomes `{greenflow_run="x",__name__=~".+"}`.
///
/// The look before the write uses it. VictoriaMetrics caches which series a filter selects, keyed by the filters
/// and the days asked for (`marshalTagFiltersKey` in `lib/storage/index_db.go`), and the cached empty answer of the
/// look before was measured to hide the imported series for about 6 s after the write and a force flush (1.145,
/// 10 million samples in time-ordered parts): the read-back after the write asks with the manifest's own selector,
/// a key that nothing cached empty.
fn probe_selector(selector: &str) -> String {
    match selector.trim_end().strip_suffix('}') {
        Some(open) if open.trim_end().ends_with('{') => format!("{open}__name__=~\".+\"}}"),
        Some(open) => format!("{open},__name__=~\".+\"}}"),
        None => selector.to_owned(),
    }
}

/// The run's data as the target holds it now, fetched into a scratch directory (removed when dropped).
pub async fn snapshot(
    target: &VmEndpoint,
    manifest: &Manifest,
) -> Result<(tempfile::TempDir, Vec<PartFile>), ArchiveError> {
    snapshot_with(target, manifest, &manifest.selector).await
}

/// [`snapshot`] with `selector` in place of the manifest's.
async fn snapshot_with(
    target: &VmEndpoint,
    manifest: &Manifest,
    selector: &str,
) -> Result<(tempfile::TempDir, Vec<PartFile>), ArchiveError> {
    let scratch =
        tempfile::tempdir().map_err(ArchiveError::io("cannot create a scratch directory in", std::env::temp_dir()))?;
    let mut staging = Staging::open(scratch.path(), selector, manifest.window)?;
    staging.fetch_all(target, &mut |_| {}).await?;
    let parts = staging.finish()?;
    Ok((scratch, parts))
}

/// How the sink's copy of a run compares with the archive when the two are not byte-identical.
enum Comparison {
    /// The same series, timestamps and sample counts; this many values re-rounded within the tolerance.
    Rounded(u64),
    /// The first difference beyond re-rounding, in words.
    Differs(String),
}

/// Relative tolerance for a re-rounded value, against the largest magnitude of its series in the part.
const ROUNDING_TOLERANCE: f64 = 1e-12;

/// Compares the archive's parts (`a`) with the sink's (`b`) series by series and sample by sample.
fn compare(a_dir: &Path, a: &[PartFile], b_dir: &Path, b: &[PartFile]) -> Result<Comparison, ArchiveError> {
    let shape = |p: &PartFile| (p.path.clone(), p.series, p.samples);
    if a.iter().map(shape).ne(b.iter().map(shape)) {
        let describe = |parts: &[PartFile]| {
            parts
                .iter()
                .map(|p| format!("{} ({} series, {} samples)", p.path, p.series, p.samples))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Ok(Comparison::Differs(format!("the archive has {}, the sink {}", describe(a), describe(b))));
    }
    let mut differing = 0;
    for (x, y) in a.iter().zip(b) {
        let (x_path, y_path) = (a_dir.join(&x.path), b_dir.join(&y.path));
        for (x_line, y_line) in crate::staging::read_part(&x_path)?.zip(crate::staging::read_part(&y_path)?) {
            let x_line = x_line.map_err(ArchiveError::io("cannot read", &x_path))?;
            let y_line = y_line.map_err(ArchiveError::io("cannot read", &y_path))?;
            let ((x_labels, xs), (y_labels, ys)) = (series::parse_line(&x_line)?, series::parse_line(&y_line)?);
            let name = || series::describe_labels(&x_labels);
            if x_labels != y_labels {
                return Ok(Comparison::Differs(format!(
                    "in {} the archive has series {} where the sink has {}",
                    x.path,
                    name(),
                    series::describe_labels(&y_labels)
                )));
            }
            if xs.len() != ys.len() {
                return Ok(Comparison::Differs(format!(
                    "in {} series {} has {} samples in the archive, {} in the sink",
                    x.path,
                    name(),
                    xs.len(),
                    ys.len()
                )));
            }
            let magnitude = xs.iter().chain(&ys).map(|s| s.1.abs()).filter(|v| v.is_finite()).fold(0.0, f64::max);
            for (&(xt, xv), &(yt, yv)) in xs.iter().zip(&ys) {
                if xt != yt {
                    return Ok(Comparison::Differs(format!(
                        "in {} series {} has a sample at {xt} ms in the archive where the sink has one at {yt} ms",
                        x.path,
                        name()
                    )));
                }
                if xv.to_bits() == yv.to_bits() || (xv.is_nan() && yv.is_nan()) {
                    continue;
                }
                if !(xv.is_finite() && yv.is_finite() && (xv - yv).abs() <= ROUNDING_TOLERANCE * magnitude) {
                    return Ok(Comparison::Differs(format!(
                        "in {} series {} at {xt} ms is {xv:?} in the archive, {yv:?} in the sink (largest magnitude \
                         {magnitude:?})",
                        x.path,
                        name()
                    )));
                }
                differing += 1;
            }
        }
    }
    Ok(Comparison::Rounded(differing))
}

fn same(a: &[PartFile], b: &[PartFile]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.path == y.path && x.sha256 == y.sha256)
}

#[cfg(test)]
mod tests {
    use super::probe_selector;

    #[test]
    fn the_probe_selects_the_same_series_in_other_words() {
        assert_eq!(probe_selector(r#"{greenflow_run="a"}"#), r#"{greenflow_run="a",__name__=~".+"}"#);
        assert_eq!(probe_selector(r#"{a="1", b="2"} "#), r#"{a="1", b="2",__name__=~".+"}"#);
        assert_eq!(probe_selector("{}"), r#"{__name__=~".+"}"#);
        assert_eq!(probe_selector("up"), "up", "a selector without braces is left alone");
    }
}
