//! `greenflow init`: a commented configuration, a secrets example and an `.envrc`.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cli::InitArgs;
use crate::exit;

/// The files `init` writes, with their contents.
pub const FILES: [(&str, &str); 3] = [
    ("greenflow.yaml", include_str!("../../../../templates/init/greenflow.yaml")),
    (".secrets.env.example", include_str!("../../../../templates/init/secrets.env.example")),
    (".envrc", include_str!("../../../../templates/init/envrc")),
];

/// Writes the files into the working directory; refuses to overwrite any of them without `--force`.
pub fn run(args: &InitArgs) -> anyhow::Result<u8> {
    let dir = std::env::current_dir().context("cannot read the working directory")?;
    let targets: Vec<(PathBuf, &str)> = FILES.iter().map(|(name, text)| (dir.join(name), *text)).collect();
    let existing: Vec<String> =
        targets.iter().filter(|(path, _)| path.exists()).map(|(path, _)| path.display().to_string()).collect();
    if !existing.is_empty() && !args.force {
        let verb = if existing.len() == 1 { "exists" } else { "exist" };
        bail!("{} already {verb}; nothing was written: use `greenflow init --force` to overwrite", existing.join(", "));
    }
    for (path, text) in &targets {
        std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!("next: copy .secrets.env.example to .secrets.env and fill it in, then `greenflow demo`");
    Ok(exit::OK)
}
