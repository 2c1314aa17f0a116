//! Evaluates the report's queries over each run's window, against the sink or the scratch VictoriaMetrics that
//! holds an archive.

use std::collections::BTreeMap;
use std::time::Duration;

use greenflow_runs::RunRecord;
use greenflow_sink::SinkClient;

use crate::error::ReportError;
use crate::queries::{FigureKind, Placeholders, PowerSourceKind, ReportQuery, aggregate};

/// A run to report on and where its samples are.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The run's record (from the run records, or an archive's manifest).
    pub record: RunRecord,
    /// The query API holding its samples.
    pub client: SinkClient,
    /// How often its Prometheus scraped (sets the plot's step and rate window).
    pub scrape_interval: Duration,
    /// Where the samples were read from, for the page (`the sink`, an archive's directory).
    pub origin: String,
}

/// A run's window: from its start to its end, in seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunWindow {
    /// The run's start.
    pub start: f64,
    /// The run's end.
    pub end: f64,
    /// The plot's step, seconds.
    pub step: f64,
}

impl RunWindow {
    /// The window of an ended run; `None` for one still running.
    pub fn of(record: &RunRecord, scrape_interval: Duration) -> Option<Self> {
        let seconds = |t: time::OffsetDateTime| t.unix_timestamp_nanos() as f64 / 1e9;
        let (start, end) = (seconds(record.start), seconds(record.end?));
        // About 500 points a plot, never finer than a scrape.
        let step = scrape_interval.as_secs_f64().max(1.0).max(((end - start) / 500.0).ceil());
        Some(Self { start, end, step })
    }

    /// The placeholders' values for this window.
    pub fn placeholders(&self, run: &str, scrape_interval: Duration) -> Placeholders {
        let scrape = scrape_interval.as_secs().max(1);
        Placeholders {
            run: run.to_owned(),
            window_seconds: ((self.end - self.start).ceil() as u64).max(1),
            rate_seconds: (4 * scrape).max(2 * self.step as u64),
        }
    }
}

/// Where a run's power came from, or why there is none.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PowerSource {
    /// The source, when the run has one.
    pub kind: Option<PowerSourceKind>,
    /// Why this source (or none), in a sentence.
    pub reason: String,
}

/// One plotted series of one run: run-relative seconds and values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Line {
    /// The series' own labels (`{device="sda"}`), empty when the query sums them up.
    pub series: String,
    /// (seconds since the run's start, value).
    pub points: Vec<(f64, f64)>,
}

/// What one run gave: plotted lines per query and figures per (query, figure, series).
#[derive(Debug, Clone, Default)]
pub struct RunValues {
    /// Lines per query key.
    pub lines: BTreeMap<String, Vec<Line>>,
    /// Figures per (query key, figure label), per series.
    pub figures: BTreeMap<(String, String), BTreeMap<String, f64>>,
}

impl RunValues {
    /// The one figure of a query without series labels (a sum), if present.
    pub fn total(&self, query: &str, figure: &str) -> Option<f64> {
        self.figures.get(&(query.to_owned(), figure.to_owned()))?.get("").copied()
    }
}

/// The labels that tell a query's series apart: those whose values differ between its series (never the metric
/// name or greenflow's run labels), as `{name="value",...}`; empty for a single series.
pub fn series_keys(metrics: &[&BTreeMap<String, String>]) -> Vec<String> {
    let varying = |name: &str| {
        name != "__name__"
            && !name.starts_with("greenflow_")
            && metrics.iter().any(|m| m.get(name) != metrics[0].get(name))
    };
    metrics
        .iter()
        .map(|metric| {
            let own: Vec<String> = metric
                .iter()
                .filter(|(name, _)| varying(name))
                .map(|(name, value)| format!("{name}={}", greenflow_sink::promql_string(value)))
                .collect();
            if own.is_empty() { String::new() } else { format!("{{{}}}", own.join(",")) }
        })
        .collect()
}

/// Finds the run's power source: Kepler's package zone first, then Scaphandre.
pub async fn power_source(client: &SinkClient, run: &str, window: &RunWindow) -> Result<PowerSource, ReportError> {
    let seconds = ((window.end - window.start).ceil() as u64).max(1);
    let run = greenflow_sink::promql_string(run);
    let at_end = |query: String| async move { client.query_at(&query, Some(window.end)).await };
    let kepler = "kepler_node_cpu_joules_total";
    let package =
        at_end(format!("count(last_over_time({kepler}{{greenflow_run={run},zone=\"package\"}}[{seconds}s]))"));
    if package.await?.first().is_some_and(|s| s.value > 0.0) {
        return Ok(PowerSource {
            kind: Some(PowerSourceKind::Kepler),
            reason: format!(
                "Kepler: {kepler} and kepler_node_cpu_watts, zone=\"package\" (zones overlap, so only the package zone is used)"
            ),
        });
    }
    let zones =
        at_end(format!("count by (zone) (last_over_time({kepler}{{greenflow_run={run}}}[{seconds}s]))")).await?;
    let scaphandre = "scaph_host_energy_microjoules";
    let scaph = at_end(format!("count(last_over_time({scaphandre}{{greenflow_run={run}}}[{seconds}s]))")).await?;
    if scaph.first().is_some_and(|s| s.value > 0.0) {
        return Ok(PowerSource {
            kind: Some(PowerSourceKind::Scaphandre),
            reason: format!(
                "Scaphandre: {scaphandre} and scaph_host_power_microwatts (no Kepler package zone in the run)"
            ),
        });
    }
    let reason = if zones.is_empty() {
        format!("missing: the run has neither Kepler's {kepler}{{zone=\"package\"}} nor Scaphandre's {scaphandre}")
    } else {
        let names: Vec<&str> = zones.iter().filter_map(|s| s.metric.get("zone").map(String::as_str)).collect();
        format!(
            "missing: the run has Kepler's {kepler} only in zones {} and no zone=\"package\"; zones overlap, so they are \
             not added up in its place",
            names.join(", ")
        )
    };
    Ok(PowerSource { kind: None, reason })
}

/// Evaluates `queries` over the run's window.
pub async fn evaluate(input: &RunInput, window: &RunWindow, queries: &[ReportQuery]) -> Result<RunValues, ReportError> {
    let placeholders = window.placeholders(input.record.id.as_str(), input.scrape_interval);
    let mut values = RunValues::default();
    for query in queries {
        let series =
            input.client.query_range(&placeholders.expand(&query.plot), window.start, window.end, window.step).await?;
        let keys = series_keys(&series.iter().map(|s| &s.metric).collect::<Vec<_>>());
        let mut lines: Vec<Line> = series
            .into_iter()
            .zip(keys)
            .map(|(s, key)| Line {
                series: key,
                points: s
                    .points
                    .into_iter()
                    .filter(|(t, v)| *t >= window.start - 1e-6 && *t <= window.end + 1e-6 && v.is_finite())
                    .map(|(t, v)| (t - window.start, v))
                    .collect(),
            })
            .filter(|line| !line.points.is_empty())
            .collect();
        lines.sort_by(|a, b| a.series.cmp(&b.series));
        for figure in &query.figures {
            let found: BTreeMap<String, f64> = match &figure.kind {
                FigureKind::Points(aggregation) => lines
                    .iter()
                    .filter_map(|line| {
                        let points: Vec<f64> = line.points.iter().map(|(_, v)| *v).collect();
                        Some((line.series.clone(), aggregate(*aggregation, &points)?))
                    })
                    .collect(),
                FigureKind::AtEnd(promql) => {
                    let samples = input.client.query_at(&placeholders.expand(promql), Some(window.end)).await?;
                    let samples: Vec<_> = samples.into_iter().filter(|s| s.value.is_finite()).collect();
                    let keys = series_keys(&samples.iter().map(|s| &s.metric).collect::<Vec<_>>());
                    keys.into_iter().zip(samples).map(|(key, s)| (key, s.value)).collect()
                }
            };
            values.figures.insert((query.key.clone(), figure.label.clone()), found);
        }
        values.lines.insert(query.key.clone(), lines);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn series_are_told_apart_by_the_labels_that_differ() {
        let a = labels(&[("__name__", "x"), ("greenflow_run", "r"), ("job", "j"), ("device", "sda")]);
        let b = labels(&[("__name__", "x"), ("greenflow_run", "r"), ("job", "j"), ("device", "sdb")]);
        assert_eq!(series_keys(&[&a, &b]), ["{device=\"sda\"}", "{device=\"sdb\"}"]);
        assert_eq!(series_keys(&[&a]), [""], "a single series needs no labels");
    }
}
