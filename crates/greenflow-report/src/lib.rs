//! `greenflow report`: summary figures over each run's window, energy per unit of work, plots with run-relative
//! time so that runs overlay, and deltas against a baseline run, written as one self-contained HTML page,
//! Markdown, CSV, and the plots as PNG and SVG.
//!
//! The figures come from the engine that holds the run: the sink, or for an archive a scratch VictoriaMetrics the
//! archive is imported into ([`scratch`]), so that a report can be rebuilt years later from the archive alone and
//! gives the same numbers as from the sink.

pub mod error;
pub mod evaluate;
pub mod plot;
pub mod queries;
pub mod scratch;
pub mod units;
pub mod write;

use greenflow_config::{Aggregation, ReportConfig};
use serde::Serialize;

pub use error::ReportError;
pub use evaluate::{PowerSource, RunInput, RunWindow};
pub use scratch::ScratchVm;

use crate::evaluate::{Line, RunValues};
use crate::queries::{Figure, FigureKind, POWER_KEY, ReportQuery};

/// The energy-per-unit formula, as the page shows it.
pub const ENERGY_FORMULA: &str = "energy per unit = (mean power − idle power) / throughput  [W / (units/s) = J/unit]; \
     also energy / work done over the run's window";

/// The work query's key.
const WORK_KEY: &str = "work";

/// The idle power the energy figures subtract.
#[derive(Debug, Clone)]
pub enum Idle {
    /// A fixed wattage.
    Watts(f64),
    /// A run at rest: its mean power.
    Run(Box<RunInput>),
}

/// What a report is asked for.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// The runs, in the order of the table's columns.
    pub runs: Vec<RunInput>,
    /// The index in `runs` of the run the others are compared with.
    pub baseline: Option<usize>,
    /// `report:` from the configuration.
    pub config: ReportConfig,
    /// The idle baseline, resolved from `report.idle`.
    pub idle: Option<Idle>,
}

/// One run as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Experiment name.
    pub name: String,
    /// Its status (`complete`, `lossy`, ...).
    pub status: String,
    /// Start, RFC 3339.
    pub start: String,
    /// End, RFC 3339.
    pub end: String,
    /// Seconds from start to end.
    pub duration_seconds: f64,
    /// The back-end that ran it.
    pub backend: String,
    /// Where its samples were read from.
    pub origin: String,
    /// Its power source, or why there is none.
    pub power: PowerSource,
    /// Why its figures may not be whole (a failed or lossy run), shown at the top of the page.
    pub warning: Option<String>,
}

/// One row of the summary table: a figure of a query (of one series), per run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The query's key.
    pub query_key: String,
    /// The query's name.
    pub query: String,
    /// The figure (`mean`, `energy`).
    pub figure: String,
    /// The series' own labels, empty for a sum.
    pub series: String,
    /// The figure's unit.
    pub unit: String,
    /// The value per run (`None`: missing; never shown as zero).
    pub values: Vec<Option<f64>>,
    /// Value minus the baseline's, per run (with a baseline).
    pub deltas: Vec<Option<f64>>,
    /// Value over the baseline's, per run (with a baseline).
    pub ratios: Vec<Option<f64>>,
}

/// One plot: a query's lines of every run on run-relative time.
#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    /// The query's key (also the file name: `plots/<key>.svg`, `.png`).
    pub key: String,
    /// Its title.
    pub title: String,
    /// The unit of its values.
    pub unit: String,
    /// The PromQL plotted, with its placeholders.
    pub query: String,
    /// Lines per run, in the order of the runs.
    pub runs: Vec<Vec<Line>>,
}

/// The energy figures' inputs and notes, per run.
#[derive(Debug, Clone, Serialize)]
pub struct EnergyNote {
    /// The idle power subtracted, watts.
    pub idle_watts: Option<f64>,
    /// Where the idle power came from.
    pub idle_source: String,
    /// Why a figure is missing, when one is.
    pub missing: Vec<String>,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was made, RFC 3339.
    pub generated_at: String,
    /// greenflow's version.
    pub greenflow_version: String,
    /// The runs, in column order.
    pub runs: Vec<RunSummary>,
    /// The baseline's index in `runs`.
    pub baseline: Option<usize>,
    /// The summary table.
    pub rows: Vec<Row>,
    /// The plots.
    pub plots: Vec<Plot>,
    /// The energy notes, per run.
    pub energy: Vec<EnergyNote>,
    /// The unit of work (`message`), when `report.work` is set.
    pub work_unit: Option<String>,
    /// The formula of energy per unit of work.
    pub energy_formula: String,
}

/// A time as the page shows it: UTC, to the second, RFC 3339.
fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn status_name(record: &greenflow_runs::RunRecord) -> String {
    serde_json::to_value(record.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Why a run's figures may be incomplete, from its record.
fn warning(record: &greenflow_runs::RunRecord) -> Option<String> {
    use greenflow_runs::RunStatus;
    let drain = record.drain.as_ref();
    let lost = drain.map_or(0, |d| d.samples_failed + d.samples_dropped);
    match record.status {
        RunStatus::Complete => None,
        RunStatus::Lossy => Some(format!(
            "run {} is lossy: {lost} samples were lost on the way to the sink; its figures leave them out",
            record.id
        )),
        RunStatus::Failed => Some(format!(
            "run {} failed{}; its figures cover what was recorded",
            record.id,
            record.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        )),
        RunStatus::NotDrained => Some(format!(
            "run {} was not drained: the sink may lack its last samples (greenflow runs recover finishes it)",
            record.id
        )),
        RunStatus::Running => Some(format!("run {} has not ended", record.id)),
    }
}

/// The work query from `report.work`: its rate plotted, work done and throughput over the window, summed over
/// the counter's series.
fn work_query(config: &ReportConfig) -> Option<ReportQuery> {
    let work = config.work.as_ref()?;
    let unit = &work.unit;
    Some(ReportQuery {
        key: WORK_KEY.into(),
        name: format!("Work ({unit})"),
        unit: format!("{unit}/s"),
        plot: format!("sum(rate({}[$rate]))", work.query),
        figures: vec![
            Figure {
                label: "done".into(),
                unit: unit.clone(),
                kind: FigureKind::AtEnd(format!("sum(increase({}[$window]))", work.query)),
            },
            Figure {
                label: "throughput".into(),
                unit: format!("{unit}/s"),
                kind: FigureKind::AtEnd(format!("sum(rate({}[$window]))", work.query)),
            },
        ],
    })
}

/// A run's values and power source.
struct Evaluated {
    values: RunValues,
    power: PowerSource,
}

async fn evaluate_run(
    input: &RunInput,
    config: &ReportConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<(Evaluated, RunWindow), ReportError> {
    let window = RunWindow::of(&input.record, input.scrape_interval)
        .ok_or_else(|| ReportError::NotEnded { run: input.record.id.to_string() })?;
    progress(&format!("querying run {} ({})", input.record.id, input.record.name));
    let power = evaluate::power_source(&input.client, input.record.id.as_str(), &window).await?;
    let queries = queries_for(config, power.kind);
    let values = evaluate::evaluate(input, &window, &queries).await?;
    Ok((Evaluated { values, power }, window))
}

/// The queries of a run with power from `power`, in table order: the power queries only with a source, the
/// per-namespace one only with Kepler's. `queries_for(config, Some(Kepler))` is every query a report can show
/// (the Scaphandre power query has the Kepler one's keys).
fn queries_for(config: &ReportConfig, power: Option<queries::PowerSourceKind>) -> Vec<ReportQuery> {
    let mut queries = queries::node_queries();
    queries.extend(power.map(queries::PowerSourceKind::query));
    if power == Some(queries::PowerSourceKind::Kepler) {
        queries.push(queries::kepler_namespace_query());
    }
    queries.extend(work_query(config));
    queries.extend(queries::user_queries(&config.queries));
    queries
}

/// Builds the report: queries every run (and the idle run), computes the energy figures and the baseline's
/// deltas. `progress` hears of each run.
pub async fn build(request: &ReportRequest, progress: &mut dyn FnMut(&str)) -> Result<Report, ReportError> {
    let mut evaluated = Vec::new();
    let mut summaries = Vec::new();
    for input in &request.runs {
        let (run, window) = evaluate_run(input, &request.config, progress).await?;
        let record = &input.record;
        summaries.push(RunSummary {
            id: record.id.to_string(),
            name: record.name.clone(),
            status: status_name(record),
            start: rfc3339(record.start),
            end: record.end.map(rfc3339).unwrap_or_default(),
            duration_seconds: window.end - window.start,
            backend: record.backend.clone(),
            origin: input.origin.clone(),
            power: run.power.clone(),
            warning: warning(record),
        });
        evaluated.push(run);
    }
    let (idle_watts, idle_source) = match &request.idle {
        None => (None, "not set (report.idle: watts or run)".to_owned()),
        Some(Idle::Watts(w)) => (Some(*w), "fixed (report.idle.watts)".to_owned()),
        Some(Idle::Run(idle)) => {
            let found = request.runs.iter().position(|r| r.record.id == idle.record.id);
            let mean = match found {
                Some(i) => evaluated[i].values.total(POWER_KEY, "mean"),
                None => evaluate_run(idle, &request.config, progress).await?.0.values.total(POWER_KEY, "mean"),
            };
            let source = match mean {
                Some(_) => format!("the mean power of run {} ({})", idle.record.id, idle.record.name),
                None => format!("missing: idle run {} has no power series", idle.record.id),
            };
            (mean, source)
        }
    };

    let all_queries = queries_for(&request.config, Some(queries::PowerSourceKind::Kepler));
    let mut rows = Vec::new();
    for query in &all_queries {
        for figure in &query.figures {
            let figure_key = (query.key.clone(), figure.label.clone());
            let mut series: Vec<String> = evaluated
                .iter()
                .flat_map(|e| e.values.figures.get(&figure_key).into_iter().flat_map(|m| m.keys().cloned()))
                .collect();
            series.sort();
            series.dedup();
            if series.is_empty() {
                series.push(String::new());
            }
            for key in series {
                let values = evaluated
                    .iter()
                    .map(|e| e.values.figures.get(&figure_key).and_then(|m| m.get(&key)).copied())
                    .collect();
                rows.push(row(query, figure, &key, values));
            }
        }
    }

    let mut energy = Vec::new();
    if let Some(work) = &request.config.work {
        let unit = &work.unit;
        let mut per_unit = Vec::new();
        let mut dynamic = Vec::new();
        for (run, summary) in evaluated.iter().zip(&summaries) {
            let v = &run.values;
            let (joules, watts) = (v.total(POWER_KEY, "energy"), v.total(POWER_KEY, "mean"));
            let (done, throughput) = (v.total(WORK_KEY, "done"), v.total(WORK_KEY, "throughput"));
            let mut missing = Vec::new();
            if run.power.kind.is_none() {
                missing.push(format!("power {}", run.power.reason));
            }
            if done.is_none() {
                missing.push(format!("work: run {} has no samples of report.work.query", summary.id));
            }
            if idle_watts.is_none() {
                missing.push(format!("idle power {idle_source}"));
            }
            per_unit.push(divide(joules, done));
            dynamic.push(match (watts, idle_watts) {
                (Some(w), Some(idle)) => divide(Some(w - idle), throughput),
                _ => None,
            });
            energy.push(EnergyNote { idle_watts, idle_source: idle_source.clone(), missing });
        }
        let query = ReportQuery {
            key: "energy-per-unit".into(),
            name: "Energy per unit of work".into(),
            unit: format!("J/{unit}"),
            plot: String::new(),
            figures: Vec::new(),
        };
        let figure = |label: &str| Figure {
            label: label.into(),
            unit: format!("J/{unit}"),
            kind: FigureKind::Points(Aggregation::Mean),
        };
        rows.push(row(&query, &figure("energy / work done"), "", per_unit));
        rows.push(row(&query, &figure("(power − idle) / throughput"), "", dynamic));
    }
    if let Some(base) = request.baseline {
        for row in &mut rows {
            let b = row.values[base];
            row.deltas = row.values.iter().map(|v| Some((*v)? - b?)).collect();
            row.ratios = row.values.iter().map(|v| divide(*v, b)).collect();
        }
    }

    let plots = all_queries
        .into_iter()
        .map(|query| Plot {
            runs: evaluated.iter().map(|e| e.values.lines.get(&query.key).cloned().unwrap_or_default()).collect(),
            key: query.key,
            title: query.name,
            unit: query.unit,
            query: query.plot,
        })
        .collect();

    Ok(Report {
        generated_at: rfc3339(time::OffsetDateTime::now_utc()),
        greenflow_version: env!("CARGO_PKG_VERSION").into(),
        runs: summaries,
        baseline: request.baseline,
        rows,
        plots,
        energy,
        work_unit: request.config.work.as_ref().map(|w| w.unit.clone()),
        energy_formula: ENERGY_FORMULA.into(),
    })
}

fn divide(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b != 0.0).then(|| a / b).filter(|v| v.is_finite())
}

fn row(query: &ReportQuery, figure: &Figure, series: &str, values: Vec<Option<f64>>) -> Row {
    Row {
        query_key: query.key.clone(),
        query: query.name.clone(),
        figure: figure.label.clone(),
        series: series.to_owned(),
        unit: figure.unit.clone(),
        values,
        deltas: Vec::new(),
        ratios: Vec::new(),
    }
}
