//! `greenflow report RUN...`: figures, energy per unit of work and plots of runs from the sink or archives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use greenflow_config::Settings;
use greenflow_report::{Idle, ReportRequest, RunInput, ScratchVm};
use greenflow_runs::RunRecord;
use greenflow_sink::{Program, SinkClient};

use crate::cli::ReportArgs;
use crate::exit;
use crate::ui::Progress;

/// Where a RUN argument's samples are.
enum Source {
    /// A run record here; its samples in the sink.
    Sink(Box<RunRecord>),
    /// An archive directory.
    Archive(PathBuf),
}

fn resolve(settings: &Settings, run: &str) -> anyhow::Result<Source> {
    let path = Path::new(run);
    if path.join("manifest.json").is_file() {
        return Ok(Source::Archive(path.to_owned()));
    }
    if path.is_dir() {
        anyhow::bail!(
            "`{run}` is a directory without manifest.json, not a greenflow archive; give an archive or a run id"
        );
    }
    Ok(Source::Sink(Box::new(super::runs::find(settings, run)?)))
}

/// The scrape interval of the Prometheus that recorded `record`.
fn scrape_interval(settings: &Settings, record: &RunRecord) -> Duration {
    if record.backend == "local" {
        settings.config.local.scrape_interval
    } else {
        settings.config.cluster.scrape_interval
    }
}

/// Resolves every source to a run input, starting the sink's client or the scratch VictoriaMetrics once.
struct Inputs<'a> {
    settings: &'a Settings,
    sink: Option<SinkClient>,
    scratch: Option<ScratchVm>,
}

impl Inputs<'_> {
    async fn input(&mut self, source: Source, progress: &mut Progress) -> anyhow::Result<RunInput> {
        let settings = self.settings;
        match source {
            Source::Sink(record) => {
                if self.sink.is_none() {
                    let urls = greenflow_sink::loopback_urls(settings);
                    let down = || {
                        format!(
                            "the sink does not answer at {}; start it (greenflow sink up) or report from an archive \
                             (greenflow archive {})",
                            urls.query_url, record.id
                        )
                    };
                    // Only looks: a sink that never ran here gets no password minted by a report.
                    let password = greenflow_sink::existing_sink_password(settings).with_context(down)?;
                    let client =
                        SinkClient::new(&urls.query_url, Some((settings.config.sink.username.clone(), password)));
                    client.health().await.with_context(down)?;
                    // A run that just ended may have samples VictoriaMetrics took in but does not search yet.
                    if let Err(e) = client.force_flush().await {
                        tracing::debug!(error = %e, "force_flush failed");
                    }
                    self.sink = Some(client);
                }
                Ok(RunInput {
                    scrape_interval: scrape_interval(settings, &record),
                    record: *record,
                    client: self.sink.clone().unwrap_or_else(|| unreachable!("set above")),
                    origin: SINK_ORIGIN.into(),
                })
            }
            Source::Archive(dir) => {
                if self.scratch.is_none() {
                    let vm = &settings.config.sink.victoria_metrics;
                    let binary = Program::VictoriaMetrics.locate(vm.binary.as_deref(), &settings.env)?;
                    progress.set("starting a scratch VictoriaMetrics for the archives");
                    self.scratch = Some(ScratchVm::start(&binary).await?);
                }
                let scratch = self.scratch.as_ref().unwrap_or_else(|| unreachable!("set above"));
                progress.set(&format!("loading the archive {}", dir.display()));
                let manifest = scratch.load(&dir).await?;
                Ok(RunInput {
                    scrape_interval: scrape_interval(settings, &manifest.run),
                    record: manifest.run,
                    client: scratch.client(),
                    origin: format!("archive {}", dir.display()),
                })
            }
        }
    }
}

/// Waits until the sink shows a just-ended run's last points: VictoriaMetrics answers a range query's points newer
/// than now minus `-search.latencyOffset` with the point before (`adjustLastPoints` in its
/// app/vmselect/promql/eval.go), so a report made the second a run ends would read its end short.
async fn wait_for_latency_offset(settings: &Settings, runs: &[RunInput], progress: &mut Progress) {
    let offset = settings.config.sink.victoria_metrics.search_latency_offset + Duration::from_millis(500);
    let newest_end = runs.iter().filter(|r| r.origin == SINK_ORIGIN).filter_map(|r| r.record.end).max();
    let Some(end) = newest_end else { return };
    let ready = end + offset;
    let now = time::OffsetDateTime::now_utc();
    if ready > now {
        progress
            .set("waiting for the sink to show the run's last points (sink.victoria_metrics.search_latency_offset)");
        tokio::time::sleep((ready - now).try_into().unwrap_or_default()).await;
    }
}

/// `RunInput::origin` of a run read from the sink.
const SINK_ORIGIN: &str = "the sink";

/// `greenflow report RUN...`.
pub async fn run(settings: &Settings, args: &ReportArgs) -> anyhow::Result<u8> {
    // Every argument is resolved before anything starts, so a typo fails at once.
    let mut sources = Vec::new();
    for run in &args.runs {
        sources.push(resolve(settings, run)?);
    }
    let baseline_source = args.baseline.as_deref().map(|b| resolve(settings, b)).transpose()?;
    let idle = settings.config.report.idle.clone().unwrap_or_default();
    let idle_source = idle.run.as_deref().map(|run| resolve(settings, run).context("report.idle.run")).transpose()?;

    let mut progress = Progress::start("building the report");
    let mut inputs = Inputs { settings, sink: None, scratch: None };
    let result = async {
        let mut runs = Vec::new();
        for source in sources {
            runs.push(inputs.input(source, &mut progress).await?);
        }
        let baseline = match baseline_source {
            None => None,
            Some(source) => {
                let base = inputs.input(source, &mut progress).await?;
                match runs.iter().position(|r| r.record.id == base.record.id) {
                    Some(i) => Some(i),
                    None => {
                        runs.insert(0, base);
                        Some(0)
                    }
                }
            }
        };
        let idle = match (idle.watts, idle_source) {
            (Some(w), _) => Some(Idle::Watts(w)),
            (None, Some(source)) => Some(Idle::Run(Box::new(inputs.input(source, &mut progress).await?))),
            (None, None) => None,
        };
        wait_for_latency_offset(settings, &runs, &mut progress).await;
        let request = ReportRequest { runs, baseline, config: settings.config.report.clone(), idle };
        let report = greenflow_report::build(&request, &mut |message| progress.set(message)).await?;
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("report-{}", report.runs[0].id)));
        progress.set(&format!("writing {}", out.display()));
        let written = greenflow_report::write::write(&report, &out)?;
        anyhow::Ok((report, written))
    }
    .await;
    if let Some(scratch) = inputs.scratch.take() {
        scratch.stop().await;
    }
    progress.finish();
    let (report, written) = result?;
    for run in &report.runs {
        if let Some(warning) = &run.warning {
            eprintln!("greenflow: {warning}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", written.html.display());
        println!("{}", written.markdown.display());
        println!("{}", written.csv.display());
        println!("{} plots in {}", written.plots.len() / 2, written.html.with_file_name("plots").display());
    }
    Ok(exit::OK)
}
