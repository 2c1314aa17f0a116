//! Series as VictoriaMetrics exports them (`/api/v1/export`, one JSON object a line) and their canonical form.
//!
//! Canonical form, the bytes an archive hashes: one series a line,
//! `{"metric":{...},"values":[...],"timestamps":[...]}`, label names in byte order; series ordered by their label
//! sets (compared as sorted lists of name/value pairs, bytewise); samples by timestamp (milliseconds), then value;
//! duplicate samples are kept, so data stored twice shows. A finite value is rounded to 15 significant digits and
//! written as the shortest decimal that reads back as that double (serde_json's `ryu` form, e.g. `0.1`, `1e+300`,
//! `1796215882.11813`); the others are the strings `"+Inf"`, `"-Inf"`
//! and `"NaN"`. Nothing in it depends on the VictoriaMetrics version that exported it: 1.79 writes `+Inf` bare
//! (not JSON), 1.1xx `"Infinity"`, and series come in no fixed order.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::ArchiveError;

/// A series' labels, `__name__` included, in name order.
pub type Labels = BTreeMap<String, String>;

/// One sample: milliseconds since the epoch, value.
pub type Sample = (i64, f64);

#[derive(Deserialize)]
struct Line {
    metric: Labels,
    values: Vec<RawValue>,
    timestamps: Vec<i64>,
}

/// A sample value as exported: a number, a string (`"Infinity"`, `"NaN"`, ...) or null; read without buffering.
enum RawValue {
    Number(f64),
    Text(String),
    Null,
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sample value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Text(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses one exported line into its labels and samples, values as written (rounding to the canonical
/// [`SIGNIFICANT_DIGITS`] happens when a line is rendered: rounding keeps the order of values, so sorting before or
/// after it gives the same lines). Takes every spelling VictoriaMetrics versions write for the values JSON has no
/// number for.
pub fn parse_line(line: &str) -> Result<(Labels, Vec<Sample>), ArchiveError> {
    let quoted = quote_bare_specials(line);
    let parsed: Line = serde_json::from_str(&quoted)
        .map_err(|e| ArchiveError::BadExport { reason: format!("{e}"), excerpt: line.chars().take(120).collect() })?;
    if parsed.values.len() != parsed.timestamps.len() {
        return Err(ArchiveError::BadExport {
            reason: format!("{} values but {} timestamps", parsed.values.len(), parsed.timestamps.len()),
            excerpt: line.chars().take(120).collect(),
        });
    }
    let mut samples = Vec::with_capacity(parsed.values.len());
    for (value, timestamp) in parsed.values.into_iter().zip(parsed.timestamps) {
        let value = match value {
            RawValue::Number(v) => v,
            RawValue::Text(text) => special(&text).ok_or_else(|| ArchiveError::BadExport {
                reason: format!("`{text}` is not a sample value"),
                excerpt: line.chars().take(120).collect(),
            })?,
            RawValue::Null => f64::NAN,
        };
        samples.push((timestamp, value));
    }
    Ok((parsed.metric, samples))
}

fn special(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "Infinity" | "+Infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Wraps the bare tokens `+Inf`, `-Inf`, `Inf` and `NaN` (outside strings) in quotes, so serde_json reads the line.
fn quote_bare_specials(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains("Inf") && !line.contains("NaN") {
        return line.into();
    }
    let mut out = String::with_capacity(line.len() + 16);
    let bytes = line.as_bytes();
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else {
            let rest = &line[i..];
            if let Some(token) = ["+Inf", "-Inf", "Inf", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
                out.push('"');
                out.push_str(token);
                out.push('"');
                i += token.len();
                continue;
            }
        }
        // Copy one whole character.
        let width = line[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&line[i..i + width]);
        i += width;
    }
    out.into()
}

/// How a value is written in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSpelling {
    /// The canonical form: `"+Inf"`, `"-Inf"`, `"NaN"` as strings.
    Canonical,
    /// What every VictoriaMetrics version's `/api/v1/import` reads as infinities: `1e999`, `-1e999`.
    Import,
}

/// One series' line (without the newline), in canonical order of labels and the given order of samples.
pub fn render_line(labels: &Labels, samples: &[Sample], spelling: ValueSpelling) -> String {
    let mut out = String::with_capacity(64 + samples.len() * 24);
    out.push_str("{\"metric\":");
    out.push_str(&describe_labels(labels));
    out.push_str(",\"values\":[");
    for (i, (_, value)) in samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_value(&mut out, *value, spelling);
    }
    out.push_str("],\"timestamps\":[");
    for (i, (timestamp, _)) in samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(itoa::Buffer::new().format(*timestamp));
    }
    out.push_str("]}");
    out
}

/// A series' labels as one JSON object, for messages.
pub fn describe_labels(labels: &Labels) -> String {
    serde_json::to_string(labels).unwrap_or_default()
}

/// Significant decimal digits a canonical value keeps: every 15-digit decimal survives a double (`DBL_DIG`), and
/// VictoriaMetrics, which stores a value as a decimal, gives back 15 of a double's 17 when data is imported again
/// (`1796215882.1181283` comes back as `1796215882.11813`), so more would make the same run's bytes differ between
/// sinks.
pub const SIGNIFICANT_DIGITS: usize = 15;

/// A finite value rounded to [`SIGNIFICANT_DIGITS`].
pub fn canonical_value(value: f64) -> f64 {
    if !value.is_finite() || value == 0.0 {
        return value;
    }
    // Most values' shortest form has 15 digits or fewer already; only the others are rounded.
    let mut buffer = ryu::Buffer::new();
    if significant_digits(buffer.format_finite(value)) <= SIGNIFICANT_DIGITS {
        return value;
    }
    format!("{value:.prec$e}", prec = SIGNIFICANT_DIGITS - 1).parse().unwrap_or(value)
}

/// Writes a finite value in canonical form, formatting it once when it is short enough already (most are).
fn push_finite(out: &mut String, value: f64) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    if value == 0.0 || significant_digits(text) <= SIGNIFICANT_DIGITS {
        out.push_str(text);
    } else {
        out.push_str(ryu::Buffer::new().format_finite(canonical_value(value)));
    }
}

/// Significant digits of a decimal as ryu writes it (`-0.00123`, `1.5e-7`, `1796215882.1181283`).
fn significant_digits(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).skip_while(|&d| d == b'0');
    let mut count = 0;
    let mut trailing_zeros = 0;
    for d in digits {
        count += 1;
        trailing_zeros = if d == b'0' { trailing_zeros + 1 } else { 0 };
    }
    // Zeros at the end of an integer part count nothing ("1000.0" has 1).
    count - trailing_zeros
}

/// A value in the canonical spelling: rounded to 15 significant digits and written as the shortest decimal that
/// reads back as that double, or `+Inf`, `-Inf`, `NaN` (bare, for CSV).
pub fn value_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        let mut text = String::new();
        push_finite(&mut text, value);
        text
    }
}

fn push_value(out: &mut String, value: f64, spelling: ValueSpelling) {
    match (spelling, value.is_finite()) {
        (_, true) => push_finite(out, value),
        (ValueSpelling::Canonical, false) => {
            out.push('"');
            out.push_str(&value_text(value));
            out.push('"');
        }
        (ValueSpelling::Import, false) if value.is_nan() => out.push_str("\"NaN\""),
        (ValueSpelling::Import, false) => out.push_str(if value > 0.0 { "1e999" } else { "-1e999" }),
    }
}

/// Sorts samples by timestamp, then value (NaN last), keeping duplicates.
pub fn sort_samples(samples: &mut [Sample]) {
    samples.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_versions_spellings_of_infinity() {
        let old = r#"{"metric":{"__name__":"n","run":"+Inf"},"values":[+Inf,-Inf,1.5],"timestamps":[1,2,3]}"#;
        let new =
            r#"{"metric":{"__name__":"n","run":"+Inf"},"values":["Infinity","-Infinity",1.5],"timestamps":[1,2,3]}"#;
        let (labels_old, old) = parse_line(old).unwrap();
        let (labels_new, new) = parse_line(new).unwrap();
        assert_eq!(labels_old, labels_new);
        assert_eq!(labels_old["run"], "+Inf", "a label value that looks special stays as it is");
        assert_eq!(old, new);
        assert_eq!(old, vec![(1, f64::INFINITY), (2, f64::NEG_INFINITY), (3, 1.5)]);
    }

    #[test]
    fn canonical_lines_read_back_exactly() {
        let labels: Labels = [("__name__".into(), "m".into()), ("a".into(), "x\"y\u{e9}".into())].into();
        let samples = vec![(1, 0.1), (2, 1e300), (3, -0.0), (4, f64::INFINITY), (5, 5e-324)];
        let line = render_line(&labels, &samples, ValueSpelling::Canonical);
        let (back_labels, back) = parse_line(&line).unwrap();
        assert_eq!(back_labels, labels);
        assert_eq!(
            back.iter().map(|s| s.1.to_bits()).collect::<Vec<_>>(),
            samples.iter().map(|s| s.1.to_bits()).collect::<Vec<_>>()
        );
        assert!(line.contains("\"+Inf\""), "{line}");
        let import = render_line(&labels, &samples, ValueSpelling::Import);
        assert!(import.contains(",1e999,"), "{import}");
    }

    #[test]
    fn a_line_with_unequal_lengths_is_refused() {
        let err = parse_line(r#"{"metric":{},"values":[1,2],"timestamps":[1]}"#).unwrap_err();
        assert!(err.to_string().contains("2 values but 1 timestamps"), "{err}");
    }
}
