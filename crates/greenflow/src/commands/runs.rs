//! `greenflow runs list | show`.

use anyhow::bail;
use greenflow_config::Settings;
use greenflow_runs::{RunRecord, RunStore};
use time::format_description::well_known::Rfc3339;

use crate::cli::{FormatArgs, RunsShowArgs};
use crate::exit;

fn store(settings: &Settings) -> RunStore {
    RunStore::new(settings.paths.runs_dir())
}

/// Lists runs, newest first.
pub fn list(settings: &Settings, args: &FormatArgs) -> anyhow::Result<u8> {
    let records = store(settings).list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(exit::OK);
    }
    if records.is_empty() {
        println!("no runs recorded yet in {}; `greenflow demo` makes one", settings.paths.runs_dir().display());
        return Ok(exit::OK);
    }
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
    Ok(exit::OK)
}

/// Shows one run.
pub fn show(settings: &Settings, args: &RunsShowArgs) -> anyhow::Result<u8> {
    let records = store(settings).list()?;
    let matching: Vec<&RunRecord> = records.iter().filter(|r| r.id.as_str().starts_with(&args.id)).collect();
    let record = match matching.as_slice() {
        [one] => *one,
        [] => bail!(
            "no run `{}` in {}; `greenflow runs list` shows the ids",
            args.id,
            settings.paths.runs_dir().display()
        ),
        _ => bail!("`{}` matches {} runs; give more of the id", args.id, matching.len()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(record)?);
    } else {
        print!("{}", serde_yaml::to_string(record)?);
    }
    Ok(exit::OK)
}
