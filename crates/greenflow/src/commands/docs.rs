//! `greenflow completions` and `greenflow man`: shell completions and man pages generated from the clap
//! definitions, so they never drift from `--help`.

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::exit;

/// Prints the completion script for one shell.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "greenflow", &mut std::io::stdout().lock());
    Ok(exit::OK)
}

/// Writes `greenflow.1` and a page per subcommand (`greenflow-sink-up.1`, ...) into `--out`.
pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create `{}`", args.out.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.out)
        .with_context(|| format!("cannot write the man pages into `{}`", args.out.display()))?;
    Ok(exit::OK)
}
