//! The command line: clap types only, no work.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Keep the metrics of experiments that run on short-lived Kubernetes clusters.
///
/// greenflow runs a metrics sink on your machine (VictoriaMetrics behind Caddy, with Grafana when installed) that a
/// cluster's Prometheus remote-writes into, so the data outlives the cluster. Every sample carries the run id and
/// experiment name as labels.
///
/// Start with `greenflow demo`: it starts the sink, a stand-in cluster on this machine, and shows data arriving.
#[derive(Debug, Parser)]
#[command(name = "greenflow", version, propagate_version = true, max_term_width = 110)]
#[command(after_help = "Exit status: 0 success, 1 the sink or a run is not healthy, 2 error (bad input, missing \
                        program, ...).\nLogging: -v/-q, or RUST_LOG (e.g. RUST_LOG=greenflow_sink=debug).")]
pub struct Cli {
    /// Configuration file [default: greenflow.yaml found upward from the working directory, else
    /// $XDG_CONFIG_HOME/greenflow/greenflow.yaml (home-manager), else /etc/greenflow/greenflow.yaml (NixOS); none:
    /// defaults].
    #[arg(long, short = 'c', global = true, env = "GREENFLOW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output (repeat for more).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: only warnings and errors (repeat for errors only).
    #[arg(long, short = 'q', global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    ///
    /// Examples:
    ///   greenflow completions bash > ~/.local/share/bash-completion/completions/greenflow
    ///   greenflow completions zsh > ~/.zfunc/_greenflow   # with fpath+=(~/.zfunc) in ~/.zshrc
    ///   greenflow completions fish > ~/.config/fish/completions/greenflow.fish
    /// The Nix package installs all three.
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// Write the man pages (greenflow.1 and one greenflow-COMMAND.1 per command) into a directory.
    Man(ManArgs),
    /// Write a commented greenflow.yaml, .secrets.env.example and .envrc into the current directory.
    Init(InitArgs),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run and inspect the local metrics sink (VictoriaMetrics, Caddy, Grafana).
    #[command(subcommand)]
    Sink(SinkCommand),
    /// Show the whole path working: the sink, a stand-in cluster on this machine writing into it, live counts.
    Demo(DemoArgs),
    /// Print the kube-prometheus-stack values that make the cluster's Prometheus write to this sink.
    ///
    /// The password is never in them: they reference the Secret `cluster.remote_write_secret`.
    Values,
    /// Install, inspect and remove greenflow's kube-prometheus-stack release on the cluster of your kubeconfig.
    ///
    /// The cluster is the one kubectl would use: KUBECONFIG (or ~/.kube/config) and its current context, or
    /// cluster.context in greenflow.yaml. Everything goes into cluster.namespace (default: monitoring).
    ///
    /// Typical use:
    ///   greenflow cluster install --dry-run   # see what would be done
    ///   greenflow cluster install             # Secret + chart; Prometheus stays at 0 replicas
    ///   greenflow cluster status              # release, Prometheus, remote-write health, lock
    ///   greenflow run my-experiment -- ./bench.sh
    #[command(subcommand, verbatim_doc_comment)]
    Cluster(ClusterCommand),
    /// Run one experiment: scale the cluster's Prometheus up, run, drain every sample into the sink, scale down.
    ///
    /// Steps:
    ///   1. check that the sink takes an authenticated write, and the cluster answers (nothing changes before)
    ///   2. take the experiment lock
    ///   3. scale Prometheus up with the labels greenflow_run and greenflow_experiment
    ///   4. wait for the run's first sample in the sink
    ///   5. run COMMAND, or wait --duration, or until Ctrl-C
    ///   6. drain: wait until the sink holds every sample up to the end
    ///   7. scale down and write the run record (`greenflow runs show ID`)
    ///
    /// Ctrl-C ends the run early and still drains; a second Ctrl-C skips the drain (not-drained).
    /// The command sees GREENFLOW_RUN and GREENFLOW_EXPERIMENT in its environment.
    ///
    /// Examples:
    ///   greenflow run kafka-baseline --duration 10m
    ///   greenflow run redpanda-3-brokers -- ./bench.sh --brokers 3
    ///   greenflow run try-it --backend local --duration 1m
    #[command(verbatim_doc_comment)]
    #[command(after_help = "Exit status: 0 complete; the command's own status when it failed; 1 samples were lost \
                            (lossy) or not drained; 2 error (nothing changed when it happens before the run starts).")]
    Run(RunArgs),
    /// List, show and recover recorded runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Take a run's samples out of the sink for analysis: JSON lines, CSV or Parquet in long form.
    ///
    /// Reads `{greenflow_run="<id>"}` over the run's window (from its record, or --from/--to) in hour parts; an
    /// interrupted export continues where it stopped when run again with the same arguments.
    ///
    /// Examples:
    ///   greenflow export 20261202T0900                      # JSON lines in the current directory
    ///   greenflow export 20261202T0900 --format parquet --out results/
    ///   python -c 'import polars as pl; print(pl.read_parquet("results/kafka-baseline-20261202T090000Z-0a1b.parquet"))'
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Make a run's archive: canonical data, a manifest of checksums, its NAR hash and Nix store path.
    ///
    /// The same run gives a byte-identical archive from any VictoriaMetrics version, so its hash can be cited and
    /// pinned. `greenflow archive verify DIR` checks one; `greenflow import DIR` loads it into a sink.
    ///
    /// Examples:
    ///   greenflow archive 20261202T0900 --out archives/
    ///   greenflow archive verify archives/greenflow-run-kafka-baseline-20261202T090000Z-0a1b
    ///   nix-store --add-fixed --recursive sha256 archives/greenflow-run-kafka-baseline-20261202T090000Z-0a1b
    #[command(verbatim_doc_comment, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Archive(ArchiveArgs),
    /// Load a run's archive into a sink, verified before and after.
    ///
    /// Checks every checksum first, writes nothing the sink holds already, reads the run back to compare with the
    /// manifest, and restores the run record.
    ///
    /// Examples:
    ///   greenflow import archives/greenflow-run-kafka-baseline-20261202T090000Z-0a1b
    ///   greenflow import DIR --sink http://127.0.0.1:8428       # a VictoriaMetrics of your own
    #[command(verbatim_doc_comment)]
    Import(ImportArgs),
    /// Summarise and compare runs: figures over each run's window, energy per unit of work, plots, a page.
    ///
    /// Each RUN is a run id (a unique prefix is enough), read from the sink, or an archive
    /// directory made by `greenflow archive`, loaded into a scratch VictoriaMetrics: a report
    /// can be rebuilt without a sink. Writes report.html (self-contained, readable offline),
    /// report.md, summary.csv, report.json and plots/*.svg|png; plots put t = 0 at each run's
    /// start so runs overlay. Figures: node CPU, memory, network and disk; power and energy
    /// from Kepler (zone="package") or Scaphandre when the run has them; `report.queries` from
    /// greenflow.yaml; energy per unit of work with `report.work` and `report.idle`.
    ///
    /// Examples:
    ///   greenflow report 20261202T0900                  # one run, into ./report-ID/
    ///   greenflow report 20261202T0900 20261202T1000 --baseline 20261202T0900 --out cmp/
    ///   greenflow report archives/greenflow-run-kafka-20261202T090000Z-0a1b --json
    #[command(verbatim_doc_comment)]
    Report(ReportArgs),
    /// Measure greenflow against baselines run alongside (in a temporary directory; your sink is not touched).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Internal: one export measured by `greenflow bench data`, in a process of its own.
    #[command(hide = true)]
    BenchExportChild(BenchExportChildArgs),
    /// Internal: the background supervisor of a run's local stand-in cluster (started by `greenflow run`).
    #[command(hide = true)]
    LocalCluster(LocalClusterArgs),
}

/// The window of a run's data to take (default: the run's record, with 5 minutes either side).
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// Start of the window (RFC 3339, e.g. 2026-12-02T09:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<time::OffsetDateTime>,
    /// End of the window (RFC 3339); needed for a run that has not ended.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<time::OffsetDateTime>,
}

/// `greenflow export RUN`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run id (a unique prefix is enough; `greenflow runs list` shows them).
    pub run: String,
    /// The file format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// The directory to write `<name>-<id>.<format>` into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// The window.
    #[command(flatten)]
    pub window: WindowArgs,
}

/// The formats of `greenflow export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One series a line: {"metric":{...},"values":[...],"timestamps":[...]} (VictoriaMetrics' own form).
    Jsonl,
    /// One sample a row: metric,labels,timestamp_ms,value.
    Csv,
    /// One sample a row: metric, labels (JSON), timestamp (ms, UTC), value; what pandas and polars read.
    Parquet,
}

/// `greenflow archive RUN | verify DIR`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Check an archive instead of making one.
    #[command(subcommand)]
    pub verify: Option<ArchiveCommand>,
    /// The run id (a unique prefix is enough).
    #[arg(required = true)]
    pub run: Option<String>,
    /// The directory to make `greenflow-run-<name>-<id>/` in.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// The window.
    #[command(flatten)]
    pub window: WindowArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow archive verify`.
#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Re-hash every file of an archive and check it against the manifest; print its NAR hash and store path.
    Verify(ArchiveVerifyArgs),
}

/// `greenflow archive verify DIR`.
#[derive(Debug, Args)]
pub struct ArchiveVerifyArgs {
    /// The archive directory.
    pub dir: PathBuf,
    /// Also require this NAR hash (SRI `sha256-...` or Nix base32), e.g. the one a paper cites.
    #[arg(long, value_name = "HASH")]
    pub expect: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow report RUN...`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run ids (unique prefixes) or archive directories; the table's columns, in this order.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<String>,
    /// The run the others are compared with (differences and ratios); added as the first column if not among RUN.
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<String>,
    /// The directory to write the report into (default: `./report-<first run id>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report's figures as JSON on stdout (the files are written too).
    #[arg(long)]
    pub json: bool,
}

/// `greenflow import DIR`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive directory.
    pub dir: PathBuf,
    /// The VictoriaMetrics to import into [default: this sink, as its owner]. greenflow's owner credential is sent
    /// only to an https or loopback URL.
    #[arg(long, value_name = "URL")]
    pub sink: Option<String>,
    /// Import even though the sink holds part of the run already (right when it deduplicates, as greenflow's sink
    /// does with -dedup.minScrapeInterval; otherwise those samples would be stored twice).
    #[arg(long)]
    pub merge: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow local-cluster DIR` (internal).
#[derive(Debug, Args)]
pub struct LocalClusterArgs {
    /// The run's local cluster directory, holding `plan.json`.
    pub dir: PathBuf,
}

/// `greenflow bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sink start to healthy (vs bare VictoriaMetrics) and a new run's first visible sample (vs writing straight
    /// into VictoriaMetrics); medians.
    Startup(BenchStartupArgs),
    /// Freshness (age of the newest sample visible in the sink during a run: p50, p90), the first sample after
    /// scale-up (with its parts: agent ready, first scrape, first send) and drain time (run end to drained), through
    /// Caddy with auth vs straight into VictoriaMetrics; whole `greenflow run` lifecycles on the local back-end;
    /// medians.
    Drain(BenchDrainArgs),
    /// Remote-write throughput at cluster scale, through Caddy with auth vs straight into VictoriaMetrics.
    ///
    /// Synthetic scrape targets, the real Prometheus agent with the queue settings greenflow renders, writing
    /// through the sink and straight into VictoriaMetrics in alternating rounds; samples/s counted by
    /// VictoriaMetrics, whether the queue kept up, CPU per million samples; medians.
    ///
    /// Examples:
    ///   greenflow bench ingest                      # 100 targets x 2000 series every 1s: 200k samples/s
    ///   greenflow bench ingest --rounds 3 --json
    ///   greenflow bench ingest --max                # raise the rate until the queue falls behind
    #[command(verbatim_doc_comment)]
    Ingest(BenchIngestArgs),
    /// Runs as data: export, copy and NAR hashing of a synthetic run, each against its baseline.
    ///
    /// On a synthetic run in a bare VictoriaMetrics: `greenflow export` vs a plain download of the same
    /// /api/v1/export (throughput, and peak memory at two run sizes), archive + import into a second
    /// VictoriaMetrics vs `vmctl vm-native` (when installed), NAR hashing vs `nix hash path` (when installed);
    /// medians.
    ///
    /// Examples:
    ///   greenflow bench data                       # 10 million samples, 3 rounds
    ///   greenflow bench data --samples 1000000 --rounds 1 --json
    #[command(verbatim_doc_comment)]
    Data(BenchDataArgs),
    /// The report of a long run against downloading its samples, on a synthetic cluster-sized run.
    ///
    /// A bare VictoriaMetrics holds a run of node-exporter's series per node (about 1100
    /// each), Kepler's zones and a work counter every 5 s. `greenflow report`'s queries,
    /// plots and files (first round; later ones read VictoriaMetrics' cache) are timed
    /// against a plain download of the run's /api/v1/export, what a notebook analysis
    /// starts with; the figures found are checked against those generated.
    ///
    /// Examples:
    ///   greenflow bench report                     # a 1-hour run of 10 nodes, 3 rounds
    ///   greenflow bench report --duration 10m --nodes 3 --rounds 1 --json
    #[command(verbatim_doc_comment)]
    Report(BenchReportArgs),
}

/// `greenflow bench report`.
#[derive(Debug, Args)]
pub struct BenchReportArgs {
    /// The synthetic run's length.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "D")]
    pub duration: std::time::Duration,
    /// Nodes in the synthetic cluster.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub nodes: usize,
    /// Rounds of each measurement.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub rounds: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow bench data`.
#[derive(Debug, Args)]
pub struct BenchDataArgs {
    /// Samples in the synthetic run (one a second per series, at most an hour long).
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    pub samples: u64,
    /// Rounds of each measurement.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub rounds: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow bench-export-child` (internal).
#[derive(Debug, Args)]
pub struct BenchExportChildArgs {
    /// VictoriaMetrics' base URL.
    pub url: String,
    /// The series selector.
    pub selector: String,
    /// Window start, ms.
    pub from_ms: i64,
    /// Window end, ms.
    pub to_ms: i64,
    /// Where to write.
    pub out: PathBuf,
}

/// `greenflow bench ingest`.
#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Series each synthetic target serves (values change on every scrape).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub series_per_target: u32,
    /// How many synthetic targets (scrape jobs) the agent scrapes: a simulated node each.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub targets: u32,
    /// How often the agent scrapes each target.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub scrape_interval: Duration,
    /// Rounds per path (direct and through the sink, alternating).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub rounds: u32,
    /// How long each round is measured, after its warm-up.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub round_duration: Duration,
    /// How long each round runs after the agent's first send before it is measured; then, at most 90 s more, until
    /// the queue has caught up with its start-up backlog.
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub warmup: Duration,
    /// Raise the rate (series per target x1.5, then bisect) until the queue stops keeping up; report the highest
    /// sustained rate per path. One round per step.
    #[arg(long)]
    pub max: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow bench drain`.
#[derive(Debug, Args)]
pub struct BenchDrainArgs {
    /// How many runs per path.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// How long each run lasts.
    #[arg(long, default_value = "20s", value_name = "DURATION")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow bench startup`.
#[derive(Debug, Args)]
pub struct BenchStartupArgs {
    /// How many times to measure each figure.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `greenflow man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `greenflow init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `greenflow config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file + defaults + environment), secrets redacted.
    Show(FormatArgs),
}

/// Output format.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `greenflow sink ...`.
#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Start the sink. In the foreground by default (Ctrl-C stops it), or in the background with --detach.
    Up(SinkUpArgs),
    /// Stop a sink started with `sink up --detach` (or one running in another terminal).
    Down,
    /// Show each component's state, pid, version, address, health, and the data size. Exit 1 if not healthy.
    Status(FormatArgs),
    /// Print the URLs and user name for remote write, queries and Grafana.
    Url(SinkUrlArgs),
    /// Write the Caddyfile and Grafana's files for a service manager (the Nix modules), without secrets: Caddy
    /// reads the password hashes from GREENFLOW_SINK_PASSWORD_HASH (the owner's),
    /// GREENFLOW_SINK_WRITER_PASSWORD_HASH and GREENFLOW_SINK_READER_PASSWORD_HASH.
    Render(SinkRenderArgs),
    /// Print a prometheus.yml for a Prometheus outside Kubernetes that writes into this sink: it scrapes itself and
    /// remote-writes with basic auth (the password read from --password-file), the queue settings of
    /// greenflow.yaml and the --label pairs as external labels. Run it in agent mode: `prometheus --agent` (before
    /// Prometheus 3: `--enable-feature=agent`).
    PrometheusConfig(SinkPrometheusConfigArgs),
}

/// `greenflow sink prometheus-config`.
#[derive(Debug, Args)]
pub struct SinkPrometheusConfigArgs {
    /// The file Prometheus reads the sink writer's password from (`basic_auth.password_file`; `greenflow sink url
    /// --show-password` shows it); only its path is printed.
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,

    /// An external label on every sample sent, e.g. `--label greenflow_run=ID` (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Write to the public address (sink.public_host, NODENAME + TAILSCALE_DOMAIN, EXPERIMENT_STORAGE_URL) instead
    /// of the loopback site.
    #[arg(long)]
    pub public: bool,

    /// The address Prometheus scrapes itself at (its --web.listen-address).
    #[arg(long, default_value = "localhost:9090", value_name = "HOST:PORT")]
    pub self_target: String,
}

/// `greenflow sink render`.
#[derive(Debug, Args)]
pub struct SinkRenderArgs {
    /// Directory to write `caddy/Caddyfile` and `grafana/` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The file Grafana reads its admin password from (default: `<data>/secrets/grafana-admin-password`).
    #[arg(long, value_name = "FILE")]
    pub grafana_admin_password_file: Option<PathBuf>,

    /// The file Grafana reads its datasource's password from: the sink reader's, good for queries only (default:
    /// `<data>/secrets/sink-reader-password`).
    #[arg(long, value_name = "FILE")]
    pub grafana_datasource_password_file: Option<PathBuf>,

    /// The file Grafana reads its `secret_key` from (default: `<data>/secrets/grafana-secret-key`).
    #[arg(long, value_name = "FILE")]
    pub grafana_secret_key_file: Option<PathBuf>,

    /// An address the public site listens on, e.g. this machine's tailnet address (`tailscale ip -4`); repeat for
    /// more. Without one, the site listens on every interface and a firewall must keep it to the tailnet.
    #[arg(long = "bind", value_name = "ADDRESS")]
    pub bind: Vec<std::net::IpAddr>,
}

/// `greenflow sink up`.
#[derive(Debug, Args)]
pub struct SinkUpArgs {
    /// Run in the background: logs and pid file go to the state directory; `greenflow sink down` stops it.
    #[arg(long, short = 'd')]
    pub detach: bool,

    /// How long to wait for every component to answer.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// Internal: this process is the background supervisor started by --detach.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// `greenflow sink url`.
#[derive(Debug, Args)]
pub struct SinkUrlArgs {
    /// The addresses the cluster should use (sink.public_host, NODENAME + TAILSCALE_DOMAIN, EXPERIMENT_STORAGE_URL).
    #[arg(long)]
    pub public: bool,

    /// Also print the password. It is never printed otherwise.
    #[arg(long)]
    pub show_password: bool,

    /// Print JSON: remote_write_url, query_url, username, grafana_url (and password with --show-password).
    #[arg(long)]
    pub json: bool,
}

/// `greenflow demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop by itself after this long (e.g. 30s, 5m) and print a summary; without it, run until Ctrl-C.
    #[arg(long = "for", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// The experiment name written into every sample (greenflow_experiment).
    #[arg(long, default_value = "demo")]
    pub name: String,

    /// How long to wait for the first sample to reach the sink.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,
}

/// The cluster a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The Kubernetes cluster of your kubeconfig (kube-prometheus-stack installed by `greenflow cluster install`).
    Kube,
    /// A stand-in on this machine: node-exporter and a Prometheus agent (no cluster needed).
    Local,
}

/// `greenflow run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment name, written into every sample as greenflow_experiment (letters, digits, '-', '_', '.').
    pub name: String,

    /// Where Prometheus runs [default: kube when a kubeconfig is found (KUBECONFIG or ~/.kube/config), else local].
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,

    /// Run for this long (e.g. 90s, 10m) instead of running a command.
    #[arg(long, value_name = "DURATION", conflicts_with = "command")]
    #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// Scale down even when the drain times out (run.drain_timeout): samples still queued are lost. Without it,
    /// the cluster's Prometheus keeps running with its queue and `greenflow runs recover` finishes later.
    #[arg(long)]
    pub force: bool,

    /// The command to run, after `--`; its exit status becomes the run's.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `greenflow cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Install or upgrade the pinned kube-prometheus-stack chart, configured to remote-write into this sink.
    ///
    /// Steps: check the route's Tailscale auth key (cluster.reach: sidecar, the default for a tailnet name, needs
    /// TS_AUTHKEY), helm (cluster.helm_binary or PATH) and that the API server answers, before anything changes;
    /// create the namespace if missing; create or update the Secret cluster.remote_write_secret with the sink's
    /// writer name and password, and for the sidecar the Secret cluster.tailscale.auth_key_secret with TS_AUTHKEY
    /// (no secret goes into Helm values); `helm upgrade --install` with the values of `greenflow values`. Safe to run
    /// again: it converges. Prometheus stays at 0 replicas until `greenflow run`.
    Install(ClusterInstallArgs),
    /// Show the release, the Prometheus resource (replicas, Available/Reconciled), remote-write health read from
    /// Prometheus' own /metrics (sent, pending, failed, dropped), who holds the experiment lock, and the route to
    /// the sink (cluster.reach; while Prometheus runs, the likely cause if its pod shows one). Exit 1 when not
    /// installed or when samples were failed or dropped.
    Status(FormatArgs),
    /// Remove the release (helm uninstall), the remote-write Secret and the experiment lock; keeps the namespace.
    /// Refused while a run holds the lock.
    Uninstall(ClusterUninstallArgs),
    /// Print the least-privilege Role and ClusterRole that greenflow's own requests need.
    ///
    /// The Role lives in cluster.namespace; each rule is commented with the commands that use it.
    /// `helm upgrade --install` itself needs more (the chart creates CRDs and ClusterRoles): a cluster
    /// administrator runs the first install.
    ///
    /// Example:
    ///   greenflow cluster rbac | kubectl apply -f -
    #[command(verbatim_doc_comment)]
    Rbac,
}

/// `greenflow cluster install`.
#[derive(Debug, Args)]
pub struct ClusterInstallArgs {
    /// Print the steps, the exact helm command and the values (password shown as `[redacted]`); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `greenflow cluster uninstall`.
#[derive(Debug, Args)]
pub struct ClusterUninstallArgs {
    /// Really remove them (without it, only say what would be removed).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `greenflow runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recorded runs, newest first.
    List(FormatArgs),
    /// Show one run's record.
    Show(RunsShowArgs),
    /// Finish runs whose greenflow died (or whose drain timed out): drain, scale down, release the lock, record.
    Recover(RunsRecoverArgs),
}

/// `greenflow runs recover`.
#[derive(Debug, Args)]
pub struct RunsRecoverArgs {
    /// Only this run (a unique prefix is enough); needed for a run started on another machine.
    pub id: Option<String>,
}

/// `greenflow runs show`.
#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// The run id (a unique prefix is enough).
    pub id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("use NAME=VALUE")?;
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if !valid {
        return Err(format!("{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A duration flag's value: at least 1s and at most 100 years. Duration flags take values that start with `-`
/// (`allow_hyphen_values`), so that `-5s` reaches this check instead of reading as an unknown flag.
fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{e}; use RFC 3339, e.g. 2026-12-02T09:00:00Z"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "use e.g. 30s, 5m, 1h30m";
    if let Some(rest) = text.strip_prefix('-')
        && humantime::parse_duration(rest).is_ok()
    {
        return Err(format!("durations cannot be negative; {EXAMPLES}"));
    }
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e}; {EXAMPLES}"))?;
    if duration < Duration::from_secs(1) {
        return Err(format!("must be at least 1s; {EXAMPLES}"));
    }
    if duration > Duration::from_secs(100 * 365 * 24 * 3600) {
        return Err(format!("must be at most 100y; {EXAMPLES}"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command's summary (the `about` that lists show) is one line: verbatim doc comments keep the source's
    /// line breaks, which a wrapped first paragraph would print mid-list.
    #[test]
    fn every_command_summary_is_one_line() {
        fn walk(command: &clap::Command, path: &str, bad: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_some_and(|about| about.to_string().contains('\n')) {
                    bad.push(path.clone());
                }
                walk(sub, &path, bad);
            }
        }
        let mut bad = Vec::new();
        walk(&<Cli as clap::CommandFactory>::command(), "greenflow", &mut bad);
        assert!(bad.is_empty(), "summaries over several lines: {bad:?}");
    }

    #[test]
    fn durations_are_positive_and_bounded() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-5s").unwrap_err().contains("cannot be negative"));
        assert!(parse_duration("0s").unwrap_err().contains("at least 1s"));
        assert!(parse_duration("500ms").unwrap_err().contains("at least 1s"));
        assert!(parse_duration("200y").unwrap_err().contains("at most 100y"));
        assert!(parse_duration("soon").unwrap_err().contains("e.g. 30s"));
        assert!(parse_duration("--").is_err());
    }

    #[test]
    fn a_negative_duration_reaches_the_value_parser() {
        let err = Cli::try_parse_from(["greenflow", "run", "x", "--duration", "-5s"]).unwrap_err().to_string();
        assert!(err.contains("durations cannot be negative"), "{err}");
        let err = Cli::try_parse_from(["greenflow", "demo", "--for", "-1m"]).unwrap_err().to_string();
        assert!(err.contains("durations cannot be negative"), "{err}");
    }
}
