//! `greenflow export | archive | archive verify | import`: runs as data.
use anyhow::{Context, bail};
use greenflow_config::Settings;
use greenflow_data::archive::{self, Archive, Created};
use greenflow_data::{FetchProgress, Format, Imported, Staging, VmEndpoint, Window};
use greenflow_runs::{RunRecord, RunStatus, RunStore};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::{ArchiveArgs, ArchiveVerifyArgs, ExportArgs, ExportFormat, ImportArgs, WindowArgs};
use crate::exit;
use crate::ui::Progress;

/// How much of the run's surroundings the default window takes in, either side.
const MARGIN_MS: i64 = 5 * 60 * 1000;

/// The sink's VictoriaMetrics as its owner, over loopback (the route that serves export and import).
fn own_sink(settings: &Settings) -> anyhow::Result<VmEndpoint> {
    let urls = greenflow_sink::loopback_urls(settings);
    let password = greenflow_sink::sink_password(settings)?;
    Ok(VmEndpoint::new(&urls.query_url, Some((settings.config.sink.username.clone(), password))))
}

/// The window of `record`'s data: --from/--to, else the run from start to end plus its drain, 5 minutes either side.
fn window(record: &RunRecord, args: &WindowArgs) -> anyhow::Result<Window> {
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let from = args.from.map(ms).unwrap_or_else(|| ms(record.start) - MARGIN_MS);
    let to = match (args.to, record.end) {
        (Some(to), _) => ms(to),
        (None, Some(end)) => {
            let drain = record.drain.as_ref().map_or(0.0, |d| d.seconds.max(0.0));
            ms(end) + (drain * 1000.0).ceil() as i64 + MARGIN_MS
        }
        (None, None) => bail!(
            "run {} has not ended (status {}); take its data once it has, or give --to",
            record.id,
            serde_json::to_value(record.status)?.as_str().unwrap_or("running")
        ),
    };
    if to <= from {
        bail!("--to must be after --from (and after the run's start); the window would be empty");
    }
    if record.status == RunStatus::Running && args.to.is_none() {
        bail!("run {} is still running; take its data once it has ended, or give --to", record.id);
    }
    Ok(Window { from_ms: from, to_ms: to })
}

fn describe_progress(verb: &str, record: &RunRecord, p: FetchProgress) -> String {
    let percent = if p.total_ms > 0 { p.done_ms * 100 / p.total_ms } else { 100 };
    format!("{verb} run {}: {percent}% of its window, {} samples", record.id, p.samples)
}

/// `greenflow export RUN`.
pub async fn export(settings: &Settings, args: &ExportArgs) -> anyhow::Result<u8> {
    let record = super::runs::find(settings, &args.run)?;
    let window = window(&record, &args.window)?;
    let format = match args.format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Parquet => Format::Parquet,
    };
    let source = own_sink(settings)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create --out `{}`", args.out.display()))?;
    let base = format!("{}-{}", record.name, record.id);
    let out = args.out.join(format!("{base}.{}", format.extension()));
    let partial = args.out.join(format!(".{base}.export"));
    let mut staging = Staging::open(&partial, &archive::run_selector(&record), window)?;
    let mut progress = Progress::start(&format!("exporting run {}", record.id));
    if staging.resumed() {
        progress.println(&format!("continuing the interrupted export in {}", partial.display()));
    }
    staging.fetch_all(&source, &mut |p| progress.set(&describe_progress("exporting", &record, p))).await?;
    progress.set(&format!("writing {}", out.display()));
    let samples = greenflow_data::formats::write(&partial, staging.parts(), format, &out)?;
    staging.finish()?;
    std::fs::remove_dir_all(&partial).with_context(|| format!("cannot remove `{}`", partial.display()))?;
    progress.finish();
    if samples == 0 {
        eprintln!(
            "greenflow: the sink holds no samples of run {} in its window; is this the sink it ran against?",
            record.id
        );
    }
    println!("{}: {samples} samples of run {} ({})", out.display(), record.id, record.name);
    Ok(exit::OK)
}

/// `greenflow archive RUN`.
pub async fn archive(settings: &Settings, args: &ArchiveArgs) -> anyhow::Result<u8> {
    let run = args.run.as_deref().context("give the run id: greenflow archive RUN (or archive verify DIR)")?;
    let record = super::runs::find(settings, run)?;
    let window = window(&record, &args.window)?;
    let source = own_sink(settings)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create --out `{}`", args.out.display()))?;
    let mut progress = Progress::start(&format!("archiving run {}", record.id));
    let (archive, created) = greenflow_data::archive::create(&source, &record, window, &args.out, &mut |p| {
        progress.set(&describe_progress("archiving", &record, p))
    })
    .await?;
    progress.finish();
    let source_version = source.version().await;
    if args.json {
        let mut value = archive_json(&archive);
        value["created"] = match created {
            Created::New => "new",
            Created::Resumed => "resumed",
            Created::Existing => "existing",
        }
        .into();
        value["exported_from_victoria_metrics"] = source_version.into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if created == Created::Existing {
            println!("an intact archive of run {} is there already", record.id);
        }
        print_archive(&archive);
        if archive.manifest.samples == 0 {
            eprintln!("greenflow: the sink holds no samples of run {} in its window; the archive is empty", record.id);
        }
    }
    Ok(exit::OK)
}

/// What `--json` shows of an archive.
fn archive_json(archive: &Archive) -> serde_json::Value {
    let m = &archive.manifest;
    serde_json::json!({
        "dir": archive.dir,
        "run": m.run.id,
        "name": m.run.name,
        "selector": m.selector,
        "window": {
            "from": rfc3339(m.window.from_ms),
            "to": rfc3339(m.window.to_ms),
        },
        "source_victoria_metrics": m.source_victoria_metrics,
        "series": m.series,
        "samples": m.samples,
        "files": m.files.len(),
        "bytes": m.files.iter().map(|f| f.bytes).sum::<u64>(),
        "nar_hash": archive.nar.sri(),
        "nar_hash_base32": archive.nar.nix_base32(),
        "store_path": archive.store_path,
        "pin": pin_lines(archive),
    })
}

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The lines that add or pin the archive in Nix.
fn pin_lines(archive: &Archive) -> Vec<String> {
    let name = archive.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    vec![
        format!("nix-store --add-fixed --recursive sha256 {}", archive.dir.display()),
        format!(
            "builtins.path {{ path = ./{name}; name = \"{name}\"; recursive = true; sha256 = \"{}\"; }}",
            archive.nar.sri()
        ),
    ]
}

fn print_archive(archive: &Archive) {
    let m = &archive.manifest;
    println!("archive    {}", archive.dir.display());
    println!("run        {} ({})", m.run.id, m.run.name);
    println!("window     {} .. {}", rfc3339(m.window.from_ms), rfc3339(m.window.to_ms));
    println!("data       {} series, {} samples in {} files", m.series, m.samples, m.files.len());
    println!("nar hash   {}  ({})", archive.nar.sri(), archive.nar.nix_base32());
    println!("store path {}", archive.store_path);
    for line in pin_lines(archive) {
        println!("pin        {line}");
    }
}

/// `greenflow archive verify DIR`.
pub fn verify(args: &ArchiveVerifyArgs) -> anyhow::Result<u8> {
    let archive = greenflow_data::archive::open(&args.dir)?;
    if let Some(expect) = &args.expect
        && expect != &archive.nar.sri()
        && expect != &archive.nar.nix_base32()
    {
        bail!(
            "archive `{}` has NAR hash {} ({}), not the --expect {expect}; it is not the archive that hash names",
            args.dir.display(),
            archive.nar.sri(),
            archive.nar.nix_base32()
        );
    }
    if args.json {
        let mut value = archive_json(&archive);
        value["intact"] = true.into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("intact: every file matches the manifest");
        print_archive(&archive);
    }
    Ok(exit::OK)
}

/// Whether greenflow's owner credential may go to `url`: https, or a loopback address.
fn may_send_credential(url: &url::Url) -> bool {
    url.scheme() == "https"
        || match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        }
}

/// `greenflow import DIR`.
pub async fn import(settings: &Settings, args: &ImportArgs) -> anyhow::Result<u8> {
    // Bad input first, before anything is read or written: the --sink URL, then the archive.
    let sink_url = match &args.sink {
        None => None,
        Some(text) => {
            let url = url::Url::parse(text).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
            let Some(url) = url else {
                bail!("--sink `{text}` is not an http(s) URL; give VictoriaMetrics' base, e.g. http://127.0.0.1:8428");
            };
            if !url.username().is_empty() || url.password().is_some() {
                bail!(
                    "--sink must not carry credentials; greenflow sends the sink owner's to an https or loopback URL"
                );
            }
            Some((text.clone(), url))
        }
    };
    let manifest = greenflow_data::verify(&args.dir)?;
    let target = match sink_url {
        None => own_sink(settings)?,
        Some((text, url)) => {
            let auth = if may_send_credential(&url) {
                greenflow_sink::sink_password(settings).ok().map(|p| (settings.config.sink.username.clone(), p))
            } else {
                None
            };
            VmEndpoint::new(&text, auth)
        }
    };
    let progress = Progress::start(&format!("importing {}", args.dir.display()));
    let result = greenflow_data::import::import_verified(&args.dir, manifest, &target, args.merge).await;
    progress.finish();
    let (manifest, imported) = result?;
    let restored = restore_record(settings, &manifest.run)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": manifest.run.id,
                "sink": target.base(),
                "imported": !matches!(imported, Imported::AlreadyThere),
                "values_rerounded": match imported { Imported::WrittenRounded { values } => values, _ => 0 },
                "samples": manifest.samples,
                "series": manifest.series,
                "verified": true,
                "record": restored,
            }))?
        );
    } else {
        match imported {
            Imported::Written => println!(
                "imported run {} ({}): {} series, {} samples into {}",
                manifest.run.id,
                manifest.run.name,
                manifest.series,
                manifest.samples,
                target.base()
            ),
            Imported::WrittenRounded { values } => println!(
                "imported run {} ({}): {} series, {} samples into {}; VictoriaMetrics re-rounded {values} values",
                manifest.run.id,
                manifest.run.name,
                manifest.series,
                manifest.samples,
                target.base()
            ),
            Imported::AlreadyThere => {
                println!("the sink holds run {} exactly as archived already; nothing written", manifest.run.id)
            }
        }
        if let Imported::WrittenRounded { .. } = imported {
            println!("verified: the sink's copy has the manifest's series and timestamps, values within 1e-12");
        } else {
            println!("verified: the sink's copy of the run hashes to the manifest's");
        }
        println!("run record: {restored}");
    }
    Ok(exit::OK)
}

/// Puts the archive's run record in the runs directory, unless one with its id is there. Says what it did.
fn restore_record(settings: &Settings, record: &RunRecord) -> anyhow::Result<String> {
    let store = RunStore::new(settings.paths.runs_dir());
    let path = store.path(&record.id);
    if path.try_exists().unwrap_or(false) {
        return Ok(format!("kept the one in {}", path.display()));
    }
    let path = store.save(record)?;
    Ok(format!("restored to {} (`greenflow runs show {}`)", path.display(), record.id))
}
