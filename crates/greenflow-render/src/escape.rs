//! Escapers for each generated file format, and the checks that keep values inside what the format can carry.
//!
//! askama calls an escaper for every `{{ value }}` in a template whose extension is registered in `askama.toml`.
//! Escapers cannot fail, so values that a format cannot represent exactly are refused beforehand by the `check_*`
//! functions, with an error that names the setting.

use std::fmt::{self, Write};

use crate::RenderError;

/// Writes a value as a YAML double-quoted scalar. Anything outside YAML's printable set is written as an escape, so
/// every string (newlines, quotes, `#`, `: `, unicode) round-trips.
#[derive(Debug, Clone, Copy)]
pub struct Yaml;

impl askama::filters::Escaper for Yaml {
    fn write_escaped_str<W: Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        dest.write_char('"')?;
        for c in string.chars() {
            match c {
                '"' => dest.write_str("\\\"")?,
                '\\' => dest.write_str("\\\\")?,
                '\n' => dest.write_str("\\n")?,
                '\t' => dest.write_str("\\t")?,
                '\r' => dest.write_str("\\r")?,
                c if yaml_printable(c) => dest.write_char(c)?,
                c if (c as u32) <= 0xFFFF => write!(dest, "\\u{:04X}", c as u32)?,
                c => write!(dest, "\\U{:08X}", c as u32)?,
            }
        }
        dest.write_char('"')
    }
}

/// YAML 1.2's `c-printable`, less the byte-order mark (which a parser may strip).
fn yaml_printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Writes a value as one double-quoted Caddyfile token. Values must have passed [`check_caddy_token`]: Caddy keeps
/// every backslash except before `"`, expands `{$VAR}` anywhere in the file and treats a quoted `{` as a brace.
#[derive(Debug, Clone, Copy)]
pub struct Caddyfile;

impl askama::filters::Escaper for Caddyfile {
    fn write_escaped_str<W: Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        dest.write_char('"')?;
        for c in string.chars() {
            if c == '"' {
                dest.write_char('\\')?;
            }
            dest.write_char(c)?;
        }
        dest.write_char('"')
    }
}

/// Refuses what a Caddyfile token cannot carry exactly: braces (placeholders, env expansion, blocks), quotes,
/// backslashes, backticks, blanks and control characters.
pub fn check_caddy_token(field: &str, value: &str) -> Result<(), RenderError> {
    let bad = value.chars().find(|c| matches!(c, '{' | '}' | '"' | '\\' | '`') || c.is_whitespace() || c.is_control());
    match bad {
        _ if value.is_empty() => Err(RenderError::unsafe_value(field, value, "it must not be empty")),
        Some(c) => Err(RenderError::unsafe_value(
            field,
            value,
            &format!("Caddy cannot carry {:?} here; use letters, digits and punctuation other than {{ }} \" \\ `", c),
        )),
        None => Ok(()),
    }
}

/// Writes a value between Grafana ini's raw quotes (`"""`), so `#` and `;` are not read as comments. Values must have
/// passed [`check_ini_value`].
#[derive(Debug, Clone, Copy)]
pub struct GrafanaIni;

impl askama::filters::Escaper for GrafanaIni {
    fn write_escaped_str<W: Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        write!(dest, "\"\"\"{string}\"\"\"")
    }
}

/// Refuses what Grafana's ini reader would change: quotes (they end the raw quoting), control characters, a trailing
/// backslash, and the expansions Grafana applies to every value (`${VAR}`, `$__env{}`, `$__file{}`, `%(key)s`).
pub fn check_ini_value(field: &str, value: &str) -> Result<(), RenderError> {
    let reason = if value.contains('"') {
        Some("Grafana's configuration cannot carry '\"' here")
    } else if value.chars().any(char::is_control) {
        Some("remove control characters such as newlines")
    } else if value.contains("${") || value.contains("$__") || value.contains("%(") {
        Some("Grafana would expand `${`, `$__` and `%(` in it")
    } else if value.ends_with('\\') {
        Some("it must not end with a backslash")
    } else if value.is_empty() {
        Some("it must not be empty")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RenderError::unsafe_value(field, value, reason)),
        None => Ok(()),
    }
}

/// Doubles `$` for Grafana's provisioning files, which expand `$VAR` and `${VAR}` and read `$$` as a literal `$`.
pub fn grafana_provisioning_literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// Formats a duration the way Prometheus reads it (`500ms`, `5s`, `90s`).
pub fn prometheus_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}
