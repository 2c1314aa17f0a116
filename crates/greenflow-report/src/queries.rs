//! The report's queries: the defaults (node CPU, memory, network, disk; power and energy from the source a run
//! has), the researcher's own from `report.queries`, and the placeholders they are written with.

use greenflow_config::{Aggregation, QueryConfig};

/// A query of the report: one plot, and one or more figures (rows of the summary table).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    /// A short name for files and JSON (`cpu`, `power`, `user-1`).
    pub key: String,
    /// What it shows (`CPU busy`).
    pub name: String,
    /// The unit of the plotted values (`cores`, `bytes`, `W`).
    pub unit: String,
    /// PromQL evaluated over the run's window for the plot; the point figures aggregate its values.
    pub plot: String,
    /// The figures it gives.
    pub figures: Vec<Figure>,
}

/// One figure of a query: a row of the summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Its label (`mean`, `energy`).
    pub label: String,
    /// Its unit.
    pub unit: String,
    /// How it is computed.
    pub kind: FigureKind,
}

/// How a figure is computed from a run's window.
#[derive(Debug, Clone, PartialEq)]
pub enum FigureKind {
    /// From the plotted values (mean, min, max, percentiles, last).
    Points(Aggregation),
    /// By the engine, one instant query at the run's end (rates and increases over the whole window).
    AtEnd(String),
}

impl Figure {
    fn points(aggregation: Aggregation, unit: &str) -> Self {
        Self { label: aggregation.as_str().into(), unit: unit.into(), kind: FigureKind::Points(aggregation) }
    }
}

/// The values the placeholders take for one run.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// The run id (`$run`).
    pub run: String,
    /// The run's length in whole seconds, at least 1 (`$window`).
    pub window_seconds: u64,
    /// A rate window covering a few scrapes and plot steps (`$rate`).
    pub rate_seconds: u64,
}

impl Placeholders {
    /// Substitutes `$run`, `$window` and `$rate` in `query`. The run id is escaped as inside a PromQL string.
    pub fn expand(&self, query: &str) -> String {
        let run: String = self
            .run
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        query
            .replace("$window", &format!("{}s", self.window_seconds))
            .replace("$rate", &format!("{}s", self.rate_seconds))
            .replace(greenflow_config::report::RUN_PLACEHOLDER, &run)
    }
}

/// Network devices that are not the node's own traffic (loopback, container and overlay interfaces).
const VIRTUAL_DEVICES: &str = "lo|veth.*|cali.*|cni.*|flannel.*|docker.*|cilium.*|lxc.*|tailscale.*|tun.*|vxlan.*";

/// node-exporter's figures, present on every run that scraped node-exporter.
pub fn node_queries() -> Vec<ReportQuery> {
    use Aggregation::{Max, Mean};
    let q = |key: &str, name: &str, unit: &str, plot: String, figures: Vec<Aggregation>| ReportQuery {
        key: key.into(),
        name: name.into(),
        unit: unit.into(),
        plot,
        figures: figures.into_iter().map(|a| Figure::points(a, unit)).collect(),
    };
    let rate = |metric: &str, matchers: &str| format!("sum(rate({metric}{{greenflow_run=\"$run\"{matchers}}}[$rate]))");
    let devices = format!(",device!~\"{VIRTUAL_DEVICES}\"");
    vec![
        q("cpu", "CPU busy", "cores", rate("node_cpu_seconds_total", ",mode!~\"idle|iowait|steal\""), vec![Mean, Max]),
        q(
            "memory",
            "Memory used",
            "bytes",
            "sum(node_memory_MemTotal_bytes{greenflow_run=\"$run\"} - node_memory_MemAvailable_bytes{greenflow_run=\"$run\"})"
                .into(),
            vec![Mean, Max],
        ),
        q("network-received", "Network received", "bytes/s", rate("node_network_receive_bytes_total", &devices), vec![Mean]),
        q("network-sent", "Network sent", "bytes/s", rate("node_network_transmit_bytes_total", &devices), vec![Mean]),
        q("disk-read", "Disk read", "bytes/s", rate("node_disk_read_bytes_total", ""), vec![Mean]),
        q("disk-written", "Disk written", "bytes/s", rate("node_disk_written_bytes_total", ""), vec![Mean]),
    ]
}

/// Where a run's power figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerSourceKind {
    /// Kepler 0.10 or later: `kepler_node_cpu_watts` and `kepler_node_cpu_joules_total`, zone `package`.
    Kepler,
    /// Scaphandre: `scaph_host_power_microwatts` and `scaph_host_energy_microjoules`.
    Scaphandre,
}

impl PowerSourceKind {
    /// The power query of this source: node power in watts (plotted, mean and max) and the energy over the
    /// window in joules (by the engine, from the energy counter).
    pub fn query(self) -> ReportQuery {
        let (plot, energy) = match self {
            // Kepler reports each RAPL zone apart; `package` holds the cores' and uncore's energy, and zones overlap
            // (core lies within package), so they are never added up.
            Self::Kepler => (
                "sum(kepler_node_cpu_watts{greenflow_run=\"$run\",zone=\"package\"})",
                "sum(increase(kepler_node_cpu_joules_total{greenflow_run=\"$run\",zone=\"package\"}[$window]))",
            ),
            Self::Scaphandre => (
                "sum(scaph_host_power_microwatts{greenflow_run=\"$run\"}) / 1e6",
                "sum(increase(scaph_host_energy_microjoules{greenflow_run=\"$run\"}[$window])) / 1e6",
            ),
        };
        ReportQuery {
            key: "power".into(),
            name: "Power".into(),
            unit: "W".into(),
            plot: plot.into(),
            figures: vec![
                Figure::points(Aggregation::Mean, "W"),
                Figure::points(Aggregation::Max, "W"),
                Figure { label: "energy".into(), unit: "J".into(), kind: FigureKind::AtEnd(energy.into()) },
            ],
        }
    }
}

/// Kepler's power per Kubernetes namespace (`kepler_pod_cpu_watts`, `kepler_pod_cpu_joules_total`, package zone),
/// one row per namespace; missing where Kepler exports no pod figures.
pub fn kepler_namespace_query() -> ReportQuery {
    ReportQuery {
        key: "power-by-namespace".into(),
        name: "Power by namespace".into(),
        unit: "W".into(),
        plot: "sum by (pod_namespace) (kepler_pod_cpu_watts{greenflow_run=\"$run\",zone=\"package\"})".into(),
        figures: vec![
            Figure::points(Aggregation::Mean, "W"),
            Figure {
                label: "energy".into(),
                unit: "J".into(),
                kind: FigureKind::AtEnd(
                    "sum by (pod_namespace) (increase(kepler_pod_cpu_joules_total{greenflow_run=\"$run\",zone=\"package\"}[$window]))"
                        .into(),
                ),
            },
        ],
    }
}

/// The power query's key: the energy figures read its mean.
pub const POWER_KEY: &str = "power";

/// The researcher's queries from `report.queries`. A counter's (rate, increase) plot is its rate, and its figure
/// the engine's rate or increase over the whole window, one per series.
pub fn user_queries(configured: &[QueryConfig]) -> Vec<ReportQuery> {
    configured
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let (plot, kind) = match q.aggregation {
                Aggregation::Rate => {
                    (format!("rate({}[$rate])", q.query), FigureKind::AtEnd(format!("rate({}[$window])", q.query)))
                }
                Aggregation::Increase => {
                    (format!("rate({}[$rate])", q.query), FigureKind::AtEnd(format!("increase({}[$window])", q.query)))
                }
                other => (q.query.clone(), FigureKind::Points(other)),
            };
            let plot_unit = match q.aggregation {
                Aggregation::Rate | Aggregation::Increase if q.unit.is_empty() => "/s".to_owned(),
                Aggregation::Rate | Aggregation::Increase => format!("{}/s", q.unit),
                _ => q.unit.clone(),
            };
            let figure_unit = if q.aggregation == Aggregation::Rate { plot_unit.clone() } else { q.unit.clone() };
            ReportQuery {
                key: format!("query-{}", i + 1),
                name: q.name.clone(),
                unit: plot_unit,
                plot,
                figures: vec![Figure { label: q.aggregation.as_str().into(), unit: figure_unit, kind }],
            }
        })
        .collect()
}

/// Aggregates a series' values over the window; `None` when there are none.
pub fn aggregate(aggregation: Aggregation, values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    let quantile = |q: f64| {
        // The same estimate as PromQL's quantile_over_time: linear between the closest ranks.
        let mut sorted = finite.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = q * (sorted.len() - 1) as f64;
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
    };
    Some(match aggregation {
        Aggregation::Mean => finite.iter().sum::<f64>() / finite.len() as f64,
        Aggregation::Min => finite.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregation::Max => finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregation::P50 => quantile(0.5),
        Aggregation::P95 => quantile(0.95),
        Aggregation::P99 => quantile(0.99),
        Aggregation::Last | Aggregation::Rate | Aggregation::Increase => *finite.last()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_and_escape_the_run() {
        let p = Placeholders { run: "a\"b".into(), window_seconds: 600, rate_seconds: 20 };
        assert_eq!(
            p.expand("sum(rate(x{greenflow_run=\"$run\"}[$rate])) / $window"),
            "sum(rate(x{greenflow_run=\"a\\\"b\"}[20s])) / 600s"
        );
    }

    #[test]
    fn aggregations_follow_their_definitions() {
        let values = [4.0, 1.0, 3.0, 2.0, f64::NAN];
        assert_eq!(aggregate(Aggregation::Mean, &values), Some(2.5));
        assert_eq!(aggregate(Aggregation::Min, &values), Some(1.0));
        assert_eq!(aggregate(Aggregation::Max, &values), Some(4.0));
        assert_eq!(aggregate(Aggregation::P50, &values), Some(2.5));
        assert_eq!(aggregate(Aggregation::Last, &values), Some(2.0));
        assert!((aggregate(Aggregation::P95, &values).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(aggregate(Aggregation::Mean, &[]), None, "no values is missing, not zero");
    }

    #[test]
    fn a_counter_query_plots_its_rate_and_is_summed_up_by_the_engine() {
        let configured = QueryConfig {
            name: "messages".into(),
            query: "msgs_total{greenflow_run=\"$run\"}".into(),
            unit: "messages".into(),
            aggregation: Aggregation::Increase,
        };
        let q = &user_queries(&[configured])[0];
        assert_eq!(q.plot, "rate(msgs_total{greenflow_run=\"$run\"}[$rate])");
        assert_eq!(q.unit, "messages/s");
        assert_eq!(q.figures[0].unit, "messages");
        assert_eq!(
            q.figures[0].kind,
            FigureKind::AtEnd("increase(msgs_total{greenflow_run=\"$run\"}[$window])".into())
        );
    }

    #[test]
    fn kepler_zones_are_filtered_never_summed() {
        let q = PowerSourceKind::Kepler.query();
        assert!(q.plot.contains("zone=\"package\""));
        for figure in &q.figures {
            if let FigureKind::AtEnd(query) = &figure.kind {
                assert!(query.contains("zone=\"package\""), "{query}");
            }
        }
    }
}
