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
    let cli = Cli::parse();
    ui::init_logging(
        cli.verbose,
        cli.quiet,
        matches!(&cli.command, Command::Sink(cli::SinkCommand::Up(a)) if a.detached_child),
    );
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::from(exit::OK);
            }
            eprintln!("greenflow: {err:#}");
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
