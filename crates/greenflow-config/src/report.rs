//! The `report:` section: what `greenflow report` computes beyond its default queries: the work metric and idle
//! baseline for energy per unit of work, and the researcher's own queries.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::model::Problems;

/// The placeholder a report query must use to read only the run's samples (`{greenflow_run="$run"}`).
pub const RUN_PLACEHOLDER: &str = "$run";

/// `report:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportConfig {
    /// The work the experiment does, for energy per unit of work (messages in, requests served, ...).
    pub work: Option<WorkConfig>,
    /// The power the nodes draw doing nothing, subtracted before dividing by the throughput.
    pub idle: Option<IdleConfig>,
    /// The researcher's own figures, each a row of the summary table and a plot.
    pub queries: Vec<QueryConfig>,
}

/// `report.work`: a counter of units of work done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkConfig {
    /// PromQL for a counter of units of work, with `$run` in its selector, e.g.
    /// `sum(kafka_server_brokertopicmetrics_messagesin_total{greenflow_run="$run"})`.
    pub query: String,
    /// What one unit is (`message`, `request`).
    #[serde(default = "default_work_unit")]
    pub unit: String,
}

fn default_work_unit() -> String {
    "unit".into()
}

/// `report.idle`: the idle power, measured (`run`) or fixed (`watts`); exactly one of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdleConfig {
    /// A run recorded with nothing running (`greenflow run idle --duration 5m`), by id or archive directory: its
    /// mean power.
    pub run: Option<String>,
    /// A fixed wattage for the nodes at rest.
    pub watts: Option<f64>,
}

/// One of `report.queries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryConfig {
    /// The row's name (unique among the queries).
    pub name: String,
    /// PromQL with `$run` (the run id) in its selectors; `$window` (the run's length, `600s`) and `$rate` (a rate
    /// window fit for the plot's step) may be used too.
    pub query: String,
    /// The unit of the query's values (`ms`, `bytes`, `messages/s`); empty for none.
    #[serde(default)]
    pub unit: String,
    /// How the values over the run's window become one figure.
    #[serde(default)]
    pub aggregation: Aggregation,
}

/// How a query's values over a run's window become one figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// The mean of the values over the window.
    #[default]
    Mean,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The median.
    P50,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
    /// The value at the run's end.
    Last,
    /// A counter's per-second rate over the whole window.
    Rate,
    /// A counter's increase over the whole window.
    Increase,
}

impl Aggregation {
    /// Its name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Min => "min",
            Self::Max => "max",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Last => "last",
            Self::Rate => "rate",
            Self::Increase => "increase",
        }
    }

    /// Whether the query is a counter (rate and increase), evaluated by the engine over the whole window.
    pub fn of_counter(self) -> bool {
        matches!(self, Self::Rate | Self::Increase)
    }
}

impl ReportConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        if let Some(work) = &self.work {
            problems.check(check_query("report.work.query", &work.query));
            if work.unit.trim().is_empty() {
                problems.push(ConfigError::value(
                    "report.work.unit",
                    &work.unit,
                    "name one unit of work, e.g. message",
                ));
            }
        }
        if let Some(idle) = &self.idle {
            match (&idle.run, idle.watts) {
                (Some(_), Some(_)) | (None, None) => problems.push(ConfigError::value(
                    "report.idle",
                    &format!("run: {:?}, watts: {:?}", idle.run, idle.watts),
                    "give one of report.idle.run (a run recorded at rest) and report.idle.watts",
                )),
                (None, Some(watts)) if !watts.is_finite() || watts < 0.0 => problems.push(ConfigError::value(
                    "report.idle.watts",
                    &watts.to_string(),
                    "give the idle power in watts, 0 or more, e.g. 45.5",
                )),
                (Some(run), None) if run.trim().is_empty() => problems.push(ConfigError::value(
                    "report.idle.run",
                    run,
                    "give the id of a run recorded at rest (greenflow run idle --duration 5m)",
                )),
                _ => {}
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, query) in self.queries.iter().enumerate() {
            let key = |field: &str| format!("report.queries[{i}].{field}");
            if query.name.trim().is_empty() {
                problems.push(ConfigError::value(&key("name"), &query.name, "give the query a name"));
            } else if !names.insert(query.name.as_str()) {
                problems.push(ConfigError::value(
                    &key("name"),
                    &query.name,
                    "another query has this name; give each its own",
                ));
            }
            problems.check(check_query(&key("query"), &query.query));
        }
        problems.finish()
    }
}

/// A query reads only its run's samples: it names `$run`.
fn check_query(key: &str, query: &str) -> Result<(), ConfigError> {
    if query.trim().is_empty() {
        return Err(ConfigError::value(key, query, "give a PromQL query, e.g. sum(my_metric{greenflow_run=\"$run\"})"));
    }
    if !query.contains(RUN_PLACEHOLDER) {
        return Err(ConfigError::value(
            key,
            query,
            "add greenflow_run=\"$run\" to its selectors, so that it reads only the run's samples",
        ));
    }
    Ok(())
}
