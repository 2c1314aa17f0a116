//! Which release of each program greenflow drives, and everything that differs by release, in one place.
//!
//! A program's release is learnt once per binary and process ([`detect`]): from what the binary says of itself, or,
//! where a build says nothing (Debian's VictoriaMetrics prints an empty `-version`), from the flags its `-help`
//! lists. The flags and directives that differ by release are then chosen here and nowhere else, the way
//! prometheus-operator gates fields with `version.GTE(...)` beside the field (`pkg/prometheus/promcfg.go`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use greenflow_render::AuthDirective;
use serde::{Deserialize, Serialize};

use crate::binaries::Program;
use crate::error::SinkError;

/// A release number: major, minor, patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number.
    pub patch: u32,
}

impl Version {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Reads `2.42.0+ds`, `v2.6.2`, `3.5.3+ds1`, `1.145.0`, `2.11` (a missing patch is 0).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches('v');
        let core = text.split(['+', '-', ' ']).next()?;
        let mut parts = core.split('.');
        let number = |part: Option<&str>| part.filter(|p| !p.is_empty()).and_then(|p| p.parse::<u32>().ok());
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        Some(Self { major, minor, patch })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What is known of an installed program's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "detected", rename_all = "kebab-case")]
pub enum Release {
    /// The binary printed its version.
    Reported {
        /// The release.
        version: Version,
        /// What it printed (first line), e.g. `prometheus, version 3.5.3+ds1 (...)`.
        text: String,
    },
    /// The binary printed no version; its `-help` flags place it in a range.
    Inferred {
        /// The lowest release that has every flag it offers.
        at_least: Version,
        /// The first release with a flag it lacks, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<Version>,
        /// The newest flag that placed it, e.g. `-search.maxDeleteDuration`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
    },
    /// Nothing could be learnt; the newest supported behaviour is assumed.
    Unknown,
}

impl Release {
    /// The lowest release it can be.
    pub fn at_least(&self) -> Option<Version> {
        match self {
            Self::Reported { version, .. } => Some(*version),
            Self::Inferred { at_least, .. } => Some(*at_least),
            Self::Unknown => None,
        }
    }

    /// True when the program is certainly older than `version`.
    pub fn certainly_below(&self, version: Version) -> bool {
        match self {
            Self::Reported { version: v, .. } => *v < version,
            Self::Inferred { below, .. } => below.is_some_and(|below| below <= version),
            Self::Unknown => false,
        }
    }

    /// True when the program is certainly `version` or newer.
    pub fn certainly_at_least(&self, version: Version) -> bool {
        self.at_least().is_some_and(|v| v >= version)
    }

    /// Whether a gate introduced in `version` is open: a known release at or past it, or an unknown release (the
    /// newest behaviour is assumed, which is what current builds need).
    pub fn has(&self, version: Version) -> bool {
        !self.certainly_below(version)
    }

    /// Short, for status and errors: `3.5.3`, `>=1.145.0 by its -help flags`, `>=1.79.0, <1.83.0 by its -help
    /// flags`, `unknown`.
    pub fn describe(&self) -> String {
        match self {
            Self::Reported { version, .. } => version.to_string(),
            Self::Inferred { at_least, below: Some(below), .. } => {
                format!(">={at_least}, <{below} by its -help flags")
            }
            Self::Inferred { at_least, below: None, .. } => format!(">={at_least} by its -help flags"),
            Self::Unknown => "unknown".into(),
        }
    }
}

/// The releases greenflow supports for a program: `min` up to, not including, `below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supported {
    /// The oldest supported release.
    pub min: Version,
    /// The first unsupported newer release (a new major number).
    pub below: Version,
}

impl fmt::Display for Supported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} or later, before {}.0", self.min.major, self.min.minor, self.below.major)
    }
}

/// Prometheus' agent mode was added in 2.32 (as `--enable-feature=agent`); 3.0 made it `--agent` and dropped the
/// feature flag (Prometheus 3 exits with "--storage.agent.path ... only in agent mode").
const PROMETHEUS_AGENT_FLAG: Version = Version::new(3, 0, 0);
/// Caddy 2.8 renamed `basicauth` to `basic_auth` (the old name warns, and will go).
const CADDY_BASIC_AUTH: Version = Version::new(2, 8, 0);

/// The supported releases of each program (the README's table says the same).
pub fn supported(program: Program) -> Supported {
    let (min, below) = match program {
        Program::Prometheus => (Version::new(2, 32, 0), Version::new(4, 0, 0)),
        Program::Caddy => (Version::new(2, 6, 0), Version::new(3, 0, 0)),
        Program::VictoriaMetrics => (Version::new(1, 79, 0), Version::new(2, 0, 0)),
        Program::NodeExporter => (Version::new(1, 0, 0), Version::new(2, 0, 0)),
        Program::Grafana => (Version::new(9, 0, 0), Version::new(14, 0, 0)),
    };
    Supported { min, below }
}

/// Flags of single-node VictoriaMetrics and the first release that has each (each checked in the release tags'
/// trees and VictoriaMetrics' `docs/CHANGELOG*.md`; none was removed again up to 1.145). Long-term-support patch
/// releases get some flags backported, so an LTS build may be placed a little high. A build that prints no version is at least the newest
/// release whose flag it lists and older than the oldest release whose flag it lacks.
pub const VICTORIA_METRICS_FLAG_RELEASES: &[(&str, Version)] = &[
    ("-search.maxMemoryPerQuery", Version::new(1, 83, 0)),
    ("-streamAggr.config", Version::new(1, 86, 0)),
    // 1.90 changed the storage format: older releases cannot read what it writes.
    ("-search.graphiteStorageStep", Version::new(1, 90, 0)),
    ("-streamAggr.dropInput", Version::new(1, 92, 0)),
    ("-search.minWindowForInstantRollupOptimization", Version::new(1, 95, 0)),
    ("-reloadAuthKey", Version::new(1, 97, 0)),
    ("-search.maxDeleteSeries", Version::new(1, 104, 0)),
    ("-promscrape.kubernetes.useHTTP2Client", Version::new(1, 105, 0)),
    ("-metricNamesStatsResetAuthKey", Version::new(1, 113, 0)),
    ("-http.disableCORS", Version::new(1, 117, 0)),
    ("-logNewSeriesAuthKey", Version::new(1, 123, 0)),
    ("-storage.maxMetadataStorageSize", Version::new(1, 130, 0)),
    ("-fs.disableMincore", Version::new(1, 135, 0)),
    ("-futureRetention", Version::new(1, 141, 0)),
    ("-opentelemetry.labelNameUnderscoreSanitization", Version::new(1, 144, 0)),
    ("-opentelemetry.promoteResourceAttributes", Version::new(1, 145, 0)),
];

/// Places a VictoriaMetrics build by the flags its `-help` lists (`  -flagName value` lines).
pub fn infer_victoria_metrics(help: &str) -> Release {
    let offered: std::collections::HashSet<&str> = help
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix('-'))
        .filter_map(|rest| rest.split([' ', '\t', '=']).next())
        .collect();
    if offered.is_empty() {
        return Release::Unknown;
    }
    let mut at_least = supported(Program::VictoriaMetrics).min;
    let mut evidence = None;
    let mut below: Option<Version> = None;
    for (flag, release) in VICTORIA_METRICS_FLAG_RELEASES {
        if offered.contains(flag.trim_start_matches('-')) {
            if *release > at_least {
                at_least = *release;
                evidence = Some((*flag).to_owned());
            }
        } else if below.is_none_or(|b| *release < b) {
            below = Some(*release);
        }
    }
    // A flag it lacks that is older than one it has was removed again, not yet added: it says nothing.
    let below = below.filter(|b| *b > at_least);
    Release::Inferred { at_least, below, evidence }
}

/// Learns a program's release from its binary: what it prints, or (VictoriaMetrics) its `-help` flags.
fn probe(program: Program, binary: &Path) -> Release {
    let args: &[&str] = match program {
        Program::VictoriaMetrics => &["-version"],
        Program::Caddy => &["version"],
        Program::Grafana | Program::Prometheus | Program::NodeExporter => &["--version"],
    };
    // A cleared environment and a home that does not exist: asking a version must leave nothing behind (Caddy 2.6's
    // CLI creates `~/.step` otherwise) and see none of greenflow's secrets.
    let run = |args: &[&str]| {
        duct::cmd(binary, args)
            .full_env([("PATH", std::env::var_os("PATH").unwrap_or_default()), ("HOME", "/nonexistent".into())])
            .stderr_to_stdout()
            .stdout_capture()
            .stdin_null()
            .unchecked()
            .read()
            .unwrap_or_default()
    };
    let output = run(args);
    // What each program's version output names (`/bin/true --version` prints coreutils' version); Caddy prints only
    // its version, Grafana stand-ins vary.
    let signature = match program {
        Program::Prometheus => Some("prometheus"),
        Program::NodeExporter => Some("node_exporter"),
        Program::VictoriaMetrics => Some("victoria-metrics"),
        Program::Caddy | Program::Grafana => None,
    };
    let signed = signature.is_none_or(|name| output.to_ascii_lowercase().contains(name));
    if signed
        && let Some(token) = crate::binaries::parse_version(&output)
        && let Some(version) = Version::parse(&token)
    {
        let text = output.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned();
        return Release::Reported { version, text };
    }
    match program {
        Program::VictoriaMetrics => infer_victoria_metrics(&run(&["-help"])),
        _ => Release::Unknown,
    }
}

/// The release of the program at `binary`, asked once per binary and process.
pub fn detect(program: Program, binary: &Path) -> Release {
    static CACHE: OnceLock<Mutex<HashMap<(PathBuf, std::time::SystemTime), Release>>> = OnceLock::new();
    let real = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_owned());
    let modified = std::fs::metadata(&real).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
    let key = (real, modified);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(release) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return release;
    }
    let release = probe(program, binary);
    if let Ok(mut cache) = cache.lock() {
        cache.insert(key, release.clone());
    }
    release
}

/// The release of `binary`, refused when it is outside the supported range or when the binary does not answer as
/// the program at all (no version, and for VictoriaMetrics no flags either: `/bin/true`, a wrong path).
pub fn detect_supported(program: Program, binary: &Path) -> Result<Release, SinkError> {
    let release = detect(program, binary);
    if release == Release::Unknown {
        return Err(SinkError::NotTheProgram { program, binary: binary.to_owned() });
    }
    check_supported(program, binary, &release)?;
    Ok(release)
}

/// Fails when `release` is outside [`supported`] for the program.
pub fn check_supported(program: Program, binary: &Path, release: &Release) -> Result<(), SinkError> {
    let range = supported(program);
    if release.certainly_below(range.min) || release.certainly_at_least(range.below) {
        return Err(SinkError::UnsupportedVersion {
            program,
            binary: binary.to_owned(),
            found: release.describe(),
            supported: range.to_string(),
        });
    }
    Ok(())
}

/// `-reloadAuthKey` came with 1.97; before it `/-/reload` on VictoriaMetrics' port has no key (only `-httpAuth.*`).
const VICTORIA_METRICS_RELOAD_KEY: Version = Version::new(1, 97, 0);

/// The flags that guard VictoriaMetrics' admin endpoints with a key (`app/victoria-metrics/main.go`,
/// `lib/httpserver`): delete, snapshots, merges and flushes, cache resets, profiling, flags, reloads where the
/// release has a key for it. `/metrics` stays open (greenflow's own status reads nothing else).
pub fn victoria_metrics_admin_key_flags(release: &Release) -> Vec<&'static str> {
    let mut flags = vec![
        "-deleteAuthKey",
        "-snapshotAuthKey",
        "-forceMergeAuthKey",
        "-search.resetCacheAuthKey",
        "-pprofAuthKey",
        "-flagsAuthKey",
        "-configAuthKey",
    ];
    if release.has(VICTORIA_METRICS_RELOAD_KEY) {
        flags.push("-reloadAuthKey");
    }
    flags
}

/// The flag that puts Prometheus in agent mode.
pub fn prometheus_agent_flag(release: &Release) -> &'static str {
    if release.has(PROMETHEUS_AGENT_FLAG) { "--agent" } else { "--enable-feature=agent" }
}

/// Caddy's basic-auth directive.
pub fn caddy_auth_directive(release: &Release) -> AuthDirective {
    if release.has(CADDY_BASIC_AUTH) { AuthDirective::BasicAuth } else { AuthDirective::Basicauth }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(text: &str) -> Release {
        Release::Reported { version: Version::parse(text).unwrap(), text: text.into() }
    }

    #[test]
    fn versions_of_both_generations_parse() {
        for (text, expected) in [
            ("2.42.0+ds", Version::new(2, 42, 0)),
            ("3.5.3+ds1", Version::new(3, 5, 3)),
            ("v1.79.5", Version::new(1, 79, 5)),
            ("1.145.0", Version::new(1, 145, 0)),
            ("v2.6.2", Version::new(2, 6, 2)),
            ("2.11.4", Version::new(2, 11, 4)),
            ("1.11", Version::new(1, 11, 0)),
        ] {
            assert_eq!(Version::parse(text), Some(expected), "{text}");
        }
        assert_eq!(Version::parse("v"), None);
        assert_eq!(Version::parse("2.x"), None);
    }

    #[test]
    fn real_version_outputs_are_reported() {
        for (output, expected) in [
            ("prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+deb12u1)", "2.42.0"),
            ("prometheus, version 3.5.3+ds1 (branch: debian/sid, revision: 3.5.3+ds1-6)", "3.5.3"),
            ("2.6.2\n", "2.6.2"),
            ("v2.10.2 h1:g/gTYjGMD0dec+UgMw8SnfmJ3I9+M2TdvoRL/Ovu6U8=", "2.10.2"),
            ("victoria-metrics-20250101-120000-tags-v1.145.0-0-gabcdef", "1.145.0"),
            ("node_exporter, version 1.11.1 (branch: debian/sid, revision: 1.11.1-3)", "1.11.1"),
        ] {
            let token = crate::binaries::parse_version(output).unwrap();
            assert_eq!(Version::parse(&token).unwrap().to_string(), expected, "{output}");
        }
    }

    #[test]
    fn prometheus_agent_flag_follows_the_major_release() {
        assert_eq!(prometheus_agent_flag(&reported("2.42.0")), "--enable-feature=agent");
        assert_eq!(prometheus_agent_flag(&reported("2.55.1")), "--enable-feature=agent");
        assert_eq!(prometheus_agent_flag(&reported("3.0.0")), "--agent");
        assert_eq!(prometheus_agent_flag(&reported("3.5.3")), "--agent");
        assert_eq!(prometheus_agent_flag(&Release::Unknown), "--agent");
    }

    #[test]
    fn caddy_directive_follows_the_release() {
        assert_eq!(caddy_auth_directive(&reported("2.6.2")), AuthDirective::Basicauth);
        assert_eq!(caddy_auth_directive(&reported("2.7.6")), AuthDirective::Basicauth);
        assert_eq!(caddy_auth_directive(&reported("2.8.4")), AuthDirective::BasicAuth);
        assert_eq!(caddy_auth_directive(&reported("2.11.4")), AuthDirective::BasicAuth);
        assert_eq!(caddy_auth_directive(&Release::Unknown), AuthDirective::BasicAuth);
    }

    #[test]
    fn unsupported_releases_are_refused_with_the_range() {
        let binary = Path::new("/usr/bin/prometheus");
        assert!(check_supported(Program::Prometheus, binary, &reported("2.42.0")).is_ok());
        assert!(check_supported(Program::Prometheus, binary, &reported("3.5.3")).is_ok());
        let old = check_supported(Program::Prometheus, binary, &reported("2.31.0")).unwrap_err().to_string();
        assert!(
            old.contains("2.31.0") && old.contains("2.32 or later") && old.contains("local.prometheus_binary"),
            "{old}"
        );
        assert!(check_supported(Program::Prometheus, binary, &reported("4.0.0")).is_err());
        assert!(check_supported(Program::Caddy, binary, &reported("2.5.2")).is_err());
        assert!(check_supported(Program::VictoriaMetrics, binary, &reported("1.78.0")).is_err());
        assert!(check_supported(Program::VictoriaMetrics, binary, &Release::Unknown).is_ok());
        let not = detect_supported(Program::VictoriaMetrics, Path::new("/bin/true")).unwrap_err().to_string();
        assert!(not.contains("`/bin/true`") && not.contains("sink.victoria_metrics.binary"), "{not}");
    }

    fn help_with(flags: &[&str]) -> String {
        let mut help = String::from("Usage of victoria-metrics:\n  -httpListenAddr array\n    \tTCP address\n");
        for flag in flags {
            help.push_str(&format!("  {flag} string\n    \tdescription\n"));
        }
        help
    }

    #[test]
    fn victoria_metrics_without_a_version_is_placed_by_its_flags() {
        let table = VICTORIA_METRICS_FLAG_RELEASES;
        let oldest_new = table.iter().map(|(_, v)| *v).min().unwrap();
        let newest = table.iter().map(|(_, v)| *v).max().unwrap();
        // No flag of the table: the oldest supported generation, older than the first flag's release.
        let old = infer_victoria_metrics(&help_with(&[]));
        assert_eq!(old.at_least(), Some(supported(Program::VictoriaMetrics).min));
        assert!(old.certainly_below(oldest_new), "{old:?}");
        // Every flag: at least the newest release of the table.
        let all: Vec<&str> = table.iter().map(|(flag, _)| *flag).collect();
        let new = infer_victoria_metrics(&help_with(&all));
        assert_eq!(new.at_least(), Some(newest));
        assert!(!new.certainly_below(newest));
        assert_eq!(new.describe(), format!(">={newest} by its -help flags"));
        // An empty help says nothing.
        assert_eq!(infer_victoria_metrics(""), Release::Unknown);
    }

    #[test]
    fn the_real_victoria_metrics_builds_are_told_apart() {
        // What Debian's 1.79.5 and 1.145.0 builds list (flags trimmed to the table's), as their -help prints them.
        let debian12 = help_with(&["-deleteAuthKey", "-search.latencyOffset", "-retentionPeriod"]);
        let current: Vec<&str> = VICTORIA_METRICS_FLAG_RELEASES.iter().map(|(flag, _)| *flag).collect();
        let old = infer_victoria_metrics(&debian12);
        let new = infer_victoria_metrics(&help_with(&current));
        assert!(old.certainly_below(new.at_least().unwrap()), "{old:?} vs {new:?}");
    }
}
