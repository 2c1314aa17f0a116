//! Terminal output: logging setup, spinners that only draw on a terminal, human sizes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// Sets up tracing on stderr. `RUST_LOG` wins over -v/-q.
pub fn init_logging(verbose: u8, quiet: u8, detached: bool) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (0, 1) => "warn",
        (0, _) => "error",
        (1, _) => "debug",
        _ => "trace",
    };
    let default =
        // kube-client logs each failed request at error level; greenflow reports the failure once itself.
        format!(
            "warn,kube_client=off,greenflow={level},greenflow_sink={level},greenflow_runs={level},\
             greenflow_config={level},greenflow_cluster={level},greenflow_data={level}"
        );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!detached && std::io::stderr().is_terminal());
    if detached {
        builder.init();
    } else {
        builder.without_time().init();
    }
}

/// A spinner on a terminal; plain lines otherwise (logs, CI).
pub struct Progress {
    bar: Option<ProgressBar>,
    last: String,
}

impl Progress {
    /// Starts showing `message`.
    pub fn start(message: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message(message.to_owned());
            bar
        });
        if bar.is_none() {
            eprintln!("{message} ...");
        }
        Self { bar, last: message.to_owned() }
    }

    /// Changes the message (printed as a new line off a terminal only when it changes).
    pub fn set(&mut self, message: &str) {
        if message == self.last {
            return;
        }
        self.last = message.to_owned();
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => eprintln!("{message} ..."),
        }
    }

    /// Prints a line that stays, above the spinner.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the spinner.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Bytes in a human unit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A duration rounded for people (`1.2s`, `3m 4s`).
pub fn human_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(60) {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
    }
}

/// The run lifecycle's progress on the terminal: one spinner a step, lines that stay for results and warnings.
#[derive(Default)]
pub struct TerminalReporter {
    current: std::sync::Mutex<Option<Progress>>,
}

impl TerminalReporter {
    /// Removes the spinner, if one shows.
    pub fn finish(&self) {
        if let Some(progress) = self.current.lock().ok().and_then(|mut c| c.take()) {
            progress.finish();
        }
    }
}

impl greenflow_runs::Reporter for TerminalReporter {
    fn phase(&self, message: &str) {
        if let Ok(mut current) = self.current.lock() {
            if let Some(old) = current.take() {
                old.finish();
            }
            *current = Some(Progress::start(message));
        }
    }

    fn update(&self, message: &str) {
        if let Ok(mut current) = self.current.lock() {
            match current.as_mut() {
                Some(progress) => progress.set(message),
                None => *current = Some(Progress::start(message)),
            }
        }
    }

    fn note(&self, message: &str) {
        match self.current.lock().ok().as_deref().and_then(Option::as_ref) {
            Some(progress) => progress.println(message),
            None => eprintln!("{message}"),
        }
    }
}
