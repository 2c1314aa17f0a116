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
    /// Configuration file [default: greenflow.yaml found upward from the working directory; none: defaults].
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
    /// List and show recorded runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Measure greenflow against baselines run alongside (in a temporary directory; your sink is not touched).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `greenflow bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sink start to healthy (vs bare VictoriaMetrics) and a new run's first visible sample (vs writing straight
    /// into VictoriaMetrics); medians.
    Startup(BenchStartupArgs),
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
}

/// `greenflow sink up`.
#[derive(Debug, Args)]
pub struct SinkUpArgs {
    /// Run in the background: logs and pid file go to the state directory; `greenflow sink down` stops it.
    #[arg(long, short = 'd')]
    pub detach: bool,

    /// How long to wait for every component to answer.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
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
    #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// The experiment name written into every sample (greenflow_experiment).
    #[arg(long, default_value = "demo")]
    pub name: String,

    /// How long to wait for the first sample to reach the sink.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `greenflow runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recorded runs, newest first.
    List(FormatArgs),
    /// Show one run's record.
    Show(RunsShowArgs),
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

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e}; use e.g. 30s, 5m, 1h30m"))
}
