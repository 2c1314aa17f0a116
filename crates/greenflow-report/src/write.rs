//! Writes a report: `report.html` (one self-contained page, the plots inlined as SVG, readable offline),
//! `report.md`, `summary.csv`, `report.json`, and `plots/<query>.svg` and `.png`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use askama::Template;
use base64::Engine;

use crate::error::ReportError;
use crate::{Report, Row, plot, units};

/// The files a report was written to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    /// The page.
    pub html: PathBuf,
    /// The Markdown.
    pub markdown: PathBuf,
    /// The summary table, one figure a row.
    pub csv: PathBuf,
    /// The whole report as JSON.
    pub json: PathBuf,
    /// The plots, SVG and PNG.
    pub plots: Vec<PathBuf>,
}

#[derive(Template)]
#[template(path = "report/report.html")]
struct Page<'a> {
    title: String,
    subtitle: String,
    version: &'a str,
    generated_at: &'a str,
    warnings: Vec<String>,
    runs: Vec<PageRun>,
    has_baseline: bool,
    rows: Vec<PageRow>,
    formula: &'a str,
    energy_notes: Vec<String>,
    plots: Vec<PagePlot>,
}

struct PageRun {
    id: String,
    label: String,
    name: String,
    status: String,
    start: String,
    length: String,
    backend: String,
    power: String,
    origin: String,
    baseline: bool,
}

struct PageRow {
    query: String,
    series: String,
    figure: String,
    cells: Vec<PageCell>,
}

struct PageCell {
    missing: bool,
    value: String,
    compared: String,
}

struct PagePlot {
    key: String,
    title: String,
    unit: String,
    query: String,
    image: Option<String>,
}

/// The report's title: the run, or the runs compared.
pub fn title(report: &Report) -> String {
    let names: Vec<String> = report.runs.iter().map(plot::run_label).collect();
    match names.len() {
        1 => format!("greenflow report: {}", names[0]),
        _ => format!("greenflow report: {}", names.join(" vs ")),
    }
}

fn length(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}

/// "Δ +12 W, ×1.08" for a run compared with the baseline; empty for the baseline itself or without one.
fn compared(report: &Report, row: &Row, run: usize) -> String {
    let Some(base) = report.baseline else { return String::new() };
    if base == run || row.values.get(run).copied().flatten().is_none() {
        return String::new();
    }
    let delta = row.deltas.get(run).copied().flatten();
    let ratio = row.ratios.get(run).copied().flatten();
    match (delta, ratio) {
        (None, _) => "no comparison: missing here or in the baseline".into(),
        (Some(d), r) => {
            let sign = if d > 0.0 { "+" } else { "" };
            let ratio = r.map(|r| format!(", ×{}", units::number(r))).unwrap_or_default();
            format!("Δ {sign}{}{ratio}", units::value(Some(d), &row.unit))
        }
    }
}

fn warnings(report: &Report) -> Vec<String> {
    report.runs.iter().filter_map(|run| run.warning.clone()).collect()
}

fn energy_notes(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    for (run, note) in report.runs.iter().zip(&report.energy) {
        let mut text = format!("{}: idle power {}", plot::run_label(run), note.idle_source);
        if let Some(w) = note.idle_watts {
            let _ = write!(text, ": {}", units::value(Some(w), "W"));
        }
        for missing in &note.missing {
            let _ = write!(text, "; {missing}");
        }
        notes.push(text);
    }
    notes
}

/// Writes every file of `report` into `out` (created if need be).
pub fn write(report: &Report, out: &Path) -> Result<Written, ReportError> {
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(ReportError::write(&plots_dir))?;
    let mut plot_files = Vec::new();
    let mut page_plots = Vec::new();
    for p in &report.plots {
        let image = if plot::has_lines(p) {
            let svg = plot::svg(p, &report.runs)?;
            let svg_path = plots_dir.join(format!("{}.svg", p.key));
            std::fs::write(&svg_path, &svg).map_err(ReportError::write(&svg_path))?;
            let png_path = plots_dir.join(format!("{}.png", p.key));
            plot::png(p, &report.runs, &png_path)?;
            plot_files.extend([svg_path, png_path]);
            Some(format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg)))
        } else {
            None
        };
        page_plots.push(PagePlot {
            key: p.key.clone(),
            title: p.title.clone(),
            unit: p.unit.clone(),
            query: p.query.clone(),
            image,
        });
    }

    let runs: Vec<PageRun> = report
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| PageRun {
            id: run.id.clone(),
            label: plot::run_label(run),
            name: run.name.clone(),
            status: run.status.clone(),
            start: run.start.clone(),
            length: length(run.duration_seconds),
            backend: run.backend.clone(),
            power: run.power.reason.clone(),
            origin: run.origin.clone(),
            baseline: report.baseline == Some(i),
        })
        .collect();
    let rows: Vec<PageRow> = report
        .rows
        .iter()
        .map(|row| PageRow {
            query: row.query.clone(),
            series: row.series.clone(),
            figure: row.figure.clone(),
            cells: row
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| PageCell {
                    missing: v.is_none(),
                    value: units::value(*v, &row.unit),
                    compared: compared(report, row, i),
                })
                .collect(),
        })
        .collect();
    let subtitle = match report.baseline {
        Some(b) => format!("{} runs, compared with {}", report.runs.len(), plot::run_label(&report.runs[b])),
        None if report.runs.len() > 1 => format!("{} runs side by side", report.runs.len()),
        None => "one run".into(),
    };
    let page = Page {
        title: title(report),
        subtitle,
        version: &report.greenflow_version,
        generated_at: &report.generated_at,
        warnings: warnings(report),
        runs,
        has_baseline: report.baseline.is_some(),
        rows,
        formula: &report.energy_formula,
        energy_notes: energy_notes(report),
        plots: page_plots,
    };
    let html = out.join("report.html");
    let text =
        page.render().map_err(|e| ReportError::Write { path: html.clone(), source: std::io::Error::other(e) })?;
    std::fs::write(&html, text).map_err(ReportError::write(&html))?;

    let markdown = out.join("report.md");
    std::fs::write(&markdown, markdown_text(report)).map_err(ReportError::write(&markdown))?;
    let csv = out.join("summary.csv");
    write_csv(report, &csv)?;
    let json = out.join("report.json");
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| ReportError::Write { path: json.clone(), source: e.into() })?;
    std::fs::write(&json, text + "\n").map_err(ReportError::write(&json))?;
    Ok(Written { html, markdown, csv, json, plots: plot_files })
}

/// The report as Markdown: the same tables, the plots as PNG links.
pub fn markdown_text(report: &Report) -> String {
    let mut md = format!("# {}\n\n", title(report));
    for warning in warnings(report) {
        let _ = writeln!(md, "> **Warning:** {warning}\n");
    }
    md.push_str(
        "## Runs\n\n| Run | Experiment | Status | Start (UTC) | Length | Power source |\n|---|---|---|---|---|---|\n",
    );
    for (i, run) in report.runs.iter().enumerate() {
        let base = if report.baseline == Some(i) { " (baseline)" } else { "" };
        let _ = writeln!(
            md,
            "| `{}`{base} | {} | {} | {} | {} | {} |",
            run.id,
            cell(&run.name),
            run.status,
            run.start,
            length(run.duration_seconds),
            cell(&run.power.reason)
        );
    }
    md.push_str("\n## Summary\n\nEach figure is taken over the run's own window; missing means no samples, never zero.\n\n| Query | Figure |");
    for run in &report.runs {
        let _ = write!(md, " {} |", cell(&plot::run_label(run)));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(report.runs.len()));
    md.push('\n');
    for row in &report.rows {
        let series = if row.series.is_empty() { String::new() } else { format!(" `{}`", row.series) };
        let _ = write!(md, "| {}{series} | {} |", cell(&row.query), cell(&row.figure));
        for (i, v) in row.values.iter().enumerate() {
            let compared = compared(report, row, i);
            let compared = if compared.is_empty() { String::new() } else { format!(" ({compared})") };
            let _ = write!(md, " {}{} |", units::value(*v, &row.unit), cell(&compared));
        }
        md.push('\n');
    }
    let _ = write!(md, "\n## Energy per unit of work\n\n`{}`\n\n", report.energy_formula);
    for note in energy_notes(report) {
        let _ = writeln!(md, "- {note}");
    }
    md.push_str("\n## Plots\n\nTime is run-relative: t = 0 at each run's start.\n\n");
    for p in &report.plots {
        if plot::has_lines(p) {
            let _ = writeln!(md, "![{}](plots/{}.png)\n", p.title, p.key);
        } else {
            let _ = writeln!(md, "- {}: no samples in any run\n", p.title);
        }
    }
    let _ = writeln!(md, "Made by greenflow {} at {}.", report.greenflow_version, report.generated_at);
    md
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write_csv(report: &Report, path: &Path) -> Result<(), ReportError> {
    let failed = |e: csv::Error| ReportError::Write { path: path.to_owned(), source: std::io::Error::other(e) };
    let mut writer = csv::Writer::from_path(path).map_err(failed)?;
    writer
        .write_record(["query", "figure", "series", "unit", "run", "experiment", "value", "delta", "ratio"])
        .map_err(failed)?;
    let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for row in &report.rows {
        for (i, run) in report.runs.iter().enumerate() {
            writer
                .write_record([
                    row.query.as_str(),
                    &row.figure,
                    &row.series,
                    &row.unit,
                    &run.id,
                    &run.name,
                    &number(row.values[i]),
                    &number(row.deltas.get(i).copied().flatten()),
                    &number(row.ratios.get(i).copied().flatten()),
                ])
                .map_err(failed)?;
        }
    }
    writer.flush().map_err(ReportError::write(path))
}
