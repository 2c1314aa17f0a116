//! Errors of the sink. Each says what failed and how to fix it; causes are kept as sources.

use std::path::PathBuf;

use crate::binaries::Program;

/// Why a sink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A required program is not on PATH.
    #[error(
        "{} is not installed: no {} on PATH; install the Debian package `{}` or nixpkgs' `{}`, or set {}",
        program.display_name(),
        program.executable_names().join(" or "),
        program.packages().0,
        program.packages().1,
        program.config_key()
    )]
    BinaryNotFound {
        /// The program.
        program: Program,
    },
    /// A configured path does not exist.
    #[error("{}: `{}` does not exist; fix the path or remove the key to look on PATH", program.config_key(), path.display())]
    BinaryNotAtPath {
        /// The program.
        program: Program,
        /// The configured path.
        path: PathBuf,
    },
    /// A program's release is outside what greenflow supports.
    #[error(
        "{} at `{}` is {found}, which greenflow does not support (supported: {supported}); install a supported release or set {}",
        program.display_name(),
        binary.display(),
        program.config_key()
    )]
    UnsupportedVersion {
        /// The program.
        program: Program,
        /// Its binary.
        binary: PathBuf,
        /// What was detected.
        found: String,
        /// The supported range.
        supported: String,
    },
    /// The binary does not answer as the program it is configured as.
    #[error(
        "`{}` does not answer as {}: it prints no version of it{}; point {} at {}'s binary",
        binary.display(),
        program.display_name(),
        if *program == Program::VictoriaMetrics { " and no flags" } else { "" },
        program.config_key(),
        program.display_name()
    )]
    NotTheProgram {
        /// The program it should be.
        program: Program,
        /// The binary.
        binary: PathBuf,
    },
    /// The data directory was written by a newer VictoriaMetrics than the one configured.
    #[error(
        "VictoriaMetrics `{}` ({found}) is older than the one that last wrote `{}` ({written_by}, `{}`) and cannot read its data; use that release or newer (sink.victoria_metrics.binary), or set paths.data_dir to another directory; the data was not touched",
        binary.display(),
        data.display(),
        written_binary.display()
    )]
    DataFromNewerVictoriaMetrics {
        /// The data directory.
        data: PathBuf,
        /// The release that last wrote it.
        written_by: String,
        /// That release's binary.
        written_binary: PathBuf,
        /// The configured release.
        found: String,
        /// The configured binary.
        binary: PathBuf,
    },
    /// A component exited while the sink was starting.
    #[error("{name} exited during start-up ({failure}); greenflow stopped the sink instead of restarting it")]
    StartupFailed {
        /// The component.
        name: String,
        /// How it exited, and its last log lines.
        failure: crate::supervisor::StartupFailure,
    },
    /// A configured path is not an executable file.
    #[error("{}: `{}` is not an executable program; point it at {}'s binary", program.config_key(), path.display(), program.display_name())]
    BinaryNotExecutable {
        /// The program.
        program: Program,
        /// The configured path.
        path: PathBuf,
    },
    /// A directory greenflow writes to lies below something that is not a directory.
    #[error("{key}: `{}` cannot be a directory: `{}` is not one; choose another path", path.display(), blocker.display())]
    NotADirectory {
        /// The key that sets the path.
        key: &'static str,
        /// The configured directory.
        path: PathBuf,
        /// The existing non-directory on its way.
        blocker: PathBuf,
    },
    /// The public site is a tailnet name but this machine's Tailscale cannot give its tailnet addresses.
    #[error(
        "sink.public_host `{host}` is a tailnet name, so the site listens on this machine's tailnet addresses only, but {detail}"
    )]
    Tailnet {
        /// The public host.
        host: String,
        /// What is wrong, with the fix.
        detail: String,
    },
    /// A port greenflow needs is taken.
    #[error("port {port} on 127.0.0.1 is already in use ({key}); stop what uses it or set {key} to a free port")]
    PortInUse {
        /// The port.
        port: u16,
        /// The configuration key that sets it.
        key: &'static str,
    },
    /// Another `greenflow sink up` holds the sink.
    #[error(
        "the sink is already running (pid {pid}); `greenflow sink status` shows it, `greenflow sink down` stops it"
    )]
    AlreadyRunning {
        /// The supervisor's pid.
        pid: u32,
    },
    /// A file or directory could not be written or read.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The settings are not usable.
    #[error(transparent)]
    Config(#[from] greenflow_config::ConfigError),
    /// `sink render` could not leave the password hash to the environment.
    #[error("cannot render the Caddyfile for a service manager: {reason}; choose another sink.username")]
    RenderedLayout {
        /// What went wrong.
        reason: &'static str,
    },
    /// A generated file could not be rendered.
    #[error(transparent)]
    Render(#[from] greenflow_render::RenderError),
    /// A process could not be started.
    #[error("cannot start {name} (`{}`)", program.display())]
    Spawn {
        /// The component.
        name: String,
        /// The binary.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Hashing the password failed.
    #[error("cannot hash the sink password")]
    Hash(#[source] bcrypt::BcryptError),
    /// An HTTP request to a sink component failed.
    #[error("{what}: request to {url} failed")]
    Http {
        /// What was asked.
        what: String,
        /// The URL (never with credentials).
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// A sink component answered with an error.
    #[error("{what}: {url} answered {status}{}", hint(*status))]
    Status {
        /// What was asked.
        what: String,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// A sink component answered something greenflow does not understand.
    #[error("{what}: unexpected answer from {url}: {detail}")]
    Answer {
        /// What was asked.
        what: String,
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// More than one problem found by one preflight pass; each is one line of the message, causes included.
    #[error("{}", several(errors))]
    Several {
        /// The problems, in the order of the checks.
        errors: Vec<SinkError>,
    },
    /// The sink did not become healthy in time.
    #[error("the sink did not become healthy within {seconds}s: {detail}; see the logs in `{}`", logs.display())]
    NotHealthy {
        /// How long greenflow waited.
        seconds: u64,
        /// Which component was not healthy, and why.
        detail: String,
        /// Where the logs are.
        logs: PathBuf,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (unauthorized: check GREENFLOW_SINK_PASSWORD and sink.username)",
        404 => " (not found: check the URL path)",
        502 | 503 => " (the component behind Caddy is not answering: check `greenflow sink status`)",
        _ => "",
    }
}

/// One problem per line (with its causes), after a count.
fn several(errors: &[SinkError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| {
            let mut line = format!("  {e}");
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                line.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            line
        })
        .collect();
    format!("{} problems, each to fix:\n{}", errors.len(), lines.join("\n"))
}

impl SinkError {
    /// Nothing, the one problem, or [`SinkError::Several`].
    pub(crate) fn all(mut problems: Vec<SinkError>) -> Result<(), SinkError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(Self::Several { errors: problems }),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
