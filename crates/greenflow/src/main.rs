//! The `greenflow` command: parses the command line, loads settings, and hands over to one command module.
//! The work itself lives in the library crates.

mod cli;
mod commands;
mod signals;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit statuses (documented in `--help`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The thing asked about is not healthy (e.g. `sink status` of a stopped sink).
    pub const UNHEALTHY: u8 = 1;
    /// An error: bad input, a missing program, a failed operation.
    pub const ERROR: u8 = 2;
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    ui::init_logging(
        cli.verbose,
        cli.quiet,
        matches!(&cli.command, Command::Sink(cli::SinkCommand::Up(a)) if a.detached_child)
            || matches!(&cli.command, Command::LocalCluster(_)),
    );
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::from(exit::OK);
            }
            eprintln!("greenflow: {}", error_message(&err));
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(commands::dispatch(cli))
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A reader that went away (`greenflow runs list | head -1`) ends the command quietly with status 0, like `cat`
/// does. `print!` panics when stdout is closed; this hook turns exactly that panic into an exit, and leaves every
/// other panic to the default hook.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if message.is_some_and(is_closed_stdout_panic) {
            std::process::exit(i32::from(exit::OK));
        }
        default(info);
    }));
}

/// Whether a panic message is std's "failed printing to stdout" for a closed pipe.
fn is_closed_stdout_panic(message: &str) -> bool {
    message.strip_prefix("failed printing to stdout: ").is_some_and(|cause| {
        cause.contains("Broken pipe") || cause.contains(&format!("(os error {})", nix::libc::EPIPE))
    })
}

/// The whole error chain on one line, each message once: a cause whose text its parent already holds (the
/// `#[error("...: {0}")]` pattern) is not repeated, and control characters (a newline in a name) are escaped.
/// When a validation pass found several problems, each follows on a line of its own (see [`several`]).
fn error_message(err: &anyhow::Error) -> String {
    // The chain up to the first cause that holds several problems; those follow, a line each.
    let mut problems = Vec::new();
    let texts = err.chain().map_while(|cause| {
        if !problems.is_empty() {
            return None;
        }
        Some(match several(cause) {
            Some(found) => {
                problems = found;
                format!("{} problems, each to fix:", problems.len())
            }
            None => cause.to_string(),
        })
    });
    let message = one_line(&join_once(texts.collect::<Vec<_>>()));
    std::iter::once(message).chain(problems.iter().map(|p| format!("  {p}"))).collect::<Vec<_>>().join("\n")
}

/// Messages joined with `: `, each once: one its predecessors already hold (the `#[error("...: {0}")]` pattern) is
/// left out, as is an empty one.
fn join_once(texts: impl IntoIterator<Item = String>) -> String {
    let mut message = String::new();
    for text in texts {
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The problems of a validation pass that found more than one (`ConfigError::Several`, `SinkError::Several`, also
/// inside the errors that wrap them transparently), each as one line with its causes.
fn several(cause: &(dyn std::error::Error + 'static)) -> Option<Vec<String>> {
    use greenflow_config::ConfigError;
    use greenflow_sink::SinkError;
    fn lines<E: std::error::Error + 'static>(errors: &[E]) -> Vec<String> {
        errors
            .iter()
            .map(|e| {
                let chain = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| e.source());
                one_line(&join_once(chain.map(|cause| cause.to_string())))
            })
            .collect()
    }
    let sink = match cause.downcast_ref::<greenflow_runs::RunError>() {
        Some(greenflow_runs::RunError::Sink(inner)) => Some(inner),
        _ => cause.downcast_ref::<SinkError>(),
    };
    let config = match sink {
        Some(SinkError::Several { errors }) => return Some(lines(errors)),
        Some(SinkError::Config(inner)) => Some(inner),
        _ => cause.downcast_ref::<ConfigError>(),
    };
    match config {
        Some(ConfigError::Several { errors }) => Some(lines(errors)),
        _ => None,
    }
}

/// `text` with its control characters escaped (`\n`, `\t`, `\u{1b}`), so that it prints as one line.
fn one_line(text: &str) -> String {
    text.trim_end().chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.into() }).collect()
}

/// Prints a command-line error the way every other error prints: one line, `greenflow: ...`, status 2. Help and
/// `--version` print as clap prints them.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    eprintln!("greenflow: {}", fold_clap_message(&err.render().to_string()));
    ExitCode::from(exit::ERROR)
}

/// clap's multi-line message (error, tips, usage, "For more information") as one line: `error: ` dropped, the
/// pieces joined by `; `, a piece that ends in `:` joined to the next by a space, and the help hint last.
fn fold_clap_message(rendered: &str) -> String {
    let mut message = String::new();
    let mut help_hint = None;
    for line in rendered.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if line.starts_with("For more information") {
            help_hint = Some("see --help");
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        let line = match line.strip_prefix("Usage: ") {
            Some(usage) => format!("usage: {usage}"),
            None => line.to_owned(),
        };
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(&line);
    }
    if let Some(hint) = help_hint {
        message.push_str("; ");
        message.push_str(hint);
    }
    one_line(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_messages_fold_into_one_line() {
        let rendered = "error: unexpected argument '--jsn' found\n\n  tip: a similar argument exists: '--json'\n\n\
                        Usage: greenflow config show --json\n\nFor more information, try '--help'.\n";
        assert_eq!(
            fold_clap_message(rendered),
            "unexpected argument '--jsn' found; tip: a similar argument exists: '--json'; usage: greenflow config \
             show --json; see --help"
        );
        let rendered = "error: the following required arguments were not provided:\n  <NAME>\n\nUsage: greenflow \
                        run <NAME>\n";
        assert_eq!(
            fold_clap_message(rendered),
            "the following required arguments were not provided: <NAME>; usage: greenflow run <NAME>"
        );
    }

    #[test]
    fn each_message_of_a_chain_is_printed_once() {
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl std::fmt::Display for Repeats {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "outer: {}", self.0)
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::new(Repeats(std::io::Error::other("inner")));
        assert_eq!(error_message(&err), "outer: inner");
        let err = anyhow::Error::new(std::io::Error::other("cause")).context("what failed");
        assert_eq!(error_message(&err), "what failed: cause");
        let err = anyhow::anyhow!("run name `a\nb` is not valid");
        assert_eq!(error_message(&err), "run name `a\\nb` is not valid");
    }

    #[test]
    fn several_problems_print_one_per_line_after_their_context() {
        use greenflow_config::ConfigError;
        let several = ConfigError::Several {
            errors: vec![ConfigError::value("a", "x\ny", "fix a"), ConfigError::value("b", "1", "fix b")],
        };
        let err = anyhow::Error::new(greenflow_sink::SinkError::from(several)).context("cannot start");
        assert_eq!(
            error_message(&err),
            "cannot start: 2 problems, each to fix:\n  a: `x\\ny` is not valid: fix a\n  b: `1` is not valid: fix b"
        );
    }

    #[test]
    fn only_the_closed_stdout_panic_is_quiet() {
        assert!(is_closed_stdout_panic("failed printing to stdout: Broken pipe (os error 32)"));
        assert!(!is_closed_stdout_panic("failed printing to stdout: No space left on device (os error 28)"));
        assert!(!is_closed_stdout_panic("index out of bounds"));
    }
}
