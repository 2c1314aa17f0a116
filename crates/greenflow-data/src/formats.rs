//! A run's data for analysis tools: JSON lines, CSV and Parquet in long form, from canonical part files.
//!
//! - `jsonl`: the canonical lines themselves (one series and part a line), uncompressed.
//! - `csv`: `metric,labels,timestamp_ms,value`, one sample a row; `labels` is a JSON object of the labels other
//!   than `__name__`; values as in the canonical form, `+Inf`, `-Inf` and `NaN` bare.
//! - `parquet`: the same four columns (`metric` and `labels` strings, `timestamp` INT64 TIMESTAMP(MILLIS, UTC),
//!   `value` DOUBLE), Snappy, one row group per part; pandas and polars read it as it is.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::error::ArchiveError;
use crate::series::{self, Labels};
use crate::staging::{self, PartFile};

/// An output format of `greenflow export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON lines, VictoriaMetrics' export form in canonical order.
    Jsonl,
    /// CSV in long form.
    Csv,
    /// Parquet in long form.
    Parquet,
}

impl Format {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// The Parquet schema of the long form.
pub const PARQUET_SCHEMA: &str = "message greenflow_samples {
  required binary metric (STRING);
  required binary labels (STRING);
  required int64 timestamp (TIMESTAMP(MILLIS,true));
  required double value;
}";

/// Writes the parts in `dir` to `out` in `format` (through `out.tmp`, so `out` is whole or absent).
pub fn write(dir: &Path, parts: &[PartFile], format: Format, out: &Path) -> Result<u64, ArchiveError> {
    let tmp = out.with_extension(format!("{}.tmp", format.extension()));
    let written = match format {
        // The canonical lines as they are, counted without being parsed.
        Format::Jsonl => write_lines(dir, parts, &tmp, |line, w| {
            writeln!(w, "{line}").map_err(ArchiveError::io("cannot write", out))?;
            Ok(staging::count_samples(line.as_bytes()))
        }),
        Format::Csv => write_csv(dir, parts, &tmp),
        Format::Parquet => write_parquet(dir, parts, &tmp),
    }?;
    fs::rename(&tmp, out).map_err(ArchiveError::io("cannot write", out))?;
    Ok(written)
}

/// Hands every line of the parts to `each` with the output; returns the samples `each` says it wrote.
fn write_lines(
    dir: &Path,
    parts: &[PartFile],
    out: &Path,
    mut each: impl FnMut(&str, &mut std::io::BufWriter<fs::File>) -> Result<u64, ArchiveError>,
) -> Result<u64, ArchiveError> {
    let file = fs::File::create(out).map_err(ArchiveError::io("cannot create", out))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut samples = 0u64;
    for part in parts {
        let path = dir.join(&part.path);
        for line in staging::read_part(&path)? {
            let line = line.map_err(ArchiveError::io("cannot read", &path))?;
            samples += each(&line, &mut writer)?;
        }
    }
    writer.flush().map_err(ArchiveError::io("cannot write", out))?;
    Ok(samples)
}

/// The labels other than `__name__`, as a JSON object, and the name.
fn split_name(labels: &Labels) -> (&str, String) {
    let name = labels.get("__name__").map(String::as_str).unwrap_or_default();
    let rest: std::collections::BTreeMap<&str, &str> =
        labels.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    (name, serde_json::to_string(&rest).unwrap_or_default())
}

fn write_csv(dir: &Path, parts: &[PartFile], out: &Path) -> Result<u64, ArchiveError> {
    let mut header = true;
    write_lines(dir, parts, out, |line, w| {
        let (labels, samples) = series::parse_line(line)?;
        let failed =
            |e: csv::Error| ArchiveError::Io { action: "cannot write", path: out.to_owned(), source: e.into() };
        let mut csv = csv::Writer::from_writer(w);
        if std::mem::take(&mut header) {
            csv.write_record(["metric", "labels", "timestamp_ms", "value"]).map_err(failed)?;
        }
        let (name, rest) = split_name(&labels);
        for (timestamp, value) in &samples {
            csv.write_record([name, rest.as_str(), &timestamp.to_string(), &series::value_text(*value)])
                .map_err(failed)?;
        }
        csv.flush().map_err(ArchiveError::io("cannot write", out))?;
        Ok(samples.len() as u64)
    })
}

fn write_parquet(dir: &Path, parts: &[PartFile], out: &Path) -> Result<u64, ArchiveError> {
    let failed = |source| ArchiveError::Parquet { path: out.to_owned(), source };
    let schema = Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA).map_err(failed)?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let file = fs::File::create(out).map_err(ArchiveError::io("cannot create", out))?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(failed)?;
    let mut total = 0u64;
    for part in parts {
        let path = dir.join(&part.path);
        let (mut metric, mut labels, mut timestamps, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for line in staging::read_part(&path)? {
            let line = line.map_err(ArchiveError::io("cannot read", &path))?;
            let (set, samples) = series::parse_line(&line)?;
            let (name, rest) = split_name(&set);
            let (name, rest) = (ByteArray::from(name), ByteArray::from(rest.as_str()));
            for (timestamp, value) in samples {
                metric.push(name.clone());
                labels.push(rest.clone());
                timestamps.push(timestamp);
                values.push(value);
            }
        }
        total += values.len() as u64;
        let mut group = writer.next_row_group().map_err(failed)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(failed)? {
            match index {
                0 => column.typed::<ByteArrayType>().write_batch(&metric, None, None),
                1 => column.typed::<ByteArrayType>().write_batch(&labels, None, None),
                2 => column.typed::<Int64Type>().write_batch(&timestamps, None, None),
                _ => column.typed::<DoubleType>().write_batch(&values, None, None),
            }
            .map_err(failed)?;
            column.close().map_err(failed)?;
            index += 1;
        }
        group.close().map_err(failed)?;
    }
    writer.close().map_err(failed)?;
    Ok(total)
}
