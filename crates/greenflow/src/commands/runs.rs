//! `greenflow runs list | show`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_runs::RunRecord;
use time::format_description::well_known::Rfc3339;

use crate::cli::{FormatArgs, RunsShowArgs};
use crate::exit;

/// A `<id>.json` file in the runs directory that does not hold a record, and why.
struct Unreadable {
    path: PathBuf,
    reason: String,
}

impl Unreadable {
    /// The file's run id (its name without `.json`).
    fn id(&self) -> String {
        self.path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// One line saying which file, why, and what to do.
    fn message(&self) -> String {
        let reason: String =
            self.reason.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.into() }).collect();
        format!(
            "run record `{}` is unreadable ({reason}); repair it, or move it out of the runs directory",
            self.path.display()
        )
    }
}

/// Every record in `dir`, newest first, and the files that could not be read. (`RunStore::list` skips unreadable
/// files with only a log line; `runs list` and `runs show` name them, so they read the files themselves.)
fn load(dir: &Path) -> anyhow::Result<(Vec<RunRecord>, Vec<Unreadable>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e).with_context(|| format!("cannot list the run records in `{}`", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| serde_json::from_str::<RunRecord>(&text).map_err(|e| format!("not a run record: {e}")));
        match parsed {
            Ok(record) => records.push(record),
            Err(reason) => unreadable.push(Unreadable { path, reason }),
        }
    }
    records.sort_by(|a, b| b.id.cmp(&a.id));
    Ok((records, unreadable))
}

/// Lists runs, newest first. Unreadable record files are named on stderr, after the list, with status 2.
pub fn list(settings: &Settings, args: &FormatArgs) -> anyhow::Result<u8> {
    let (records, unreadable) = load(&settings.paths.runs_dir())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else if records.is_empty() && unreadable.is_empty() {
        println!("no runs recorded yet in {}; `greenflow demo` makes one", settings.paths.runs_dir().display());
    } else if !records.is_empty() {
        println!("{:<24} {:<20} {:<12} {:<22} {:>8}", "ID", "NAME", "STATUS", "START (UTC)", "SAMPLES");
        for record in &records {
            println!(
                "{:<24} {:<20} {:<12} {:<22} {:>8}",
                record.id,
                record.name,
                serde_json::to_value(record.status)?.as_str().unwrap_or_default(),
                record.start.format(&Rfc3339)?,
                record.samples.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            );
        }
    }
    for file in &unreadable {
        eprintln!("greenflow: {}", file.message());
    }
    Ok(if unreadable.is_empty() { exit::OK } else { exit::ERROR })
}

/// The one recorded run whose id starts with `id`.
pub fn find(settings: &Settings, id: &str) -> anyhow::Result<RunRecord> {
    let (records, unreadable) = load(&settings.paths.runs_dir())?;
    let mut matching: Vec<RunRecord> = records.into_iter().filter(|r| r.id.as_str().starts_with(id)).collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => match unreadable.iter().find(|file| file.id().starts_with(id)) {
            Some(file) => bail!("{}", file.message()),
            None => {
                bail!("no run `{id}` in {}; `greenflow runs list` shows the ids", settings.paths.runs_dir().display())
            }
        },
        n => bail!("`{id}` matches {n} runs; give more of the id"),
    }
}

/// Shows one run.
pub fn show(settings: &Settings, args: &RunsShowArgs) -> anyhow::Result<u8> {
    let record = &find(settings, &args.id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(record)?);
    } else {
        print!("{}", serde_yaml::to_string(record)?);
    }
    Ok(exit::OK)
}
