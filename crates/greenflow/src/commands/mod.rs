//! One module per verb; each turns parsed arguments into calls on the library crates and prints the outcome.

mod bench;
mod cluster;
mod config;
mod data;
mod demo;
mod docs;
mod init;
mod prometheus_config;
mod render;
mod report;
mod run;
mod runs;
mod sink;

use anyhow::Context;
use greenflow_config::Settings;

use crate::cli::{ArchiveCommand, BenchCommand, Cli, Command, ConfigCommand, RunsCommand, SinkCommand};

/// Runs the chosen command; returns the exit status.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Init(args) => return init::run(args),
        Command::Completions(args) => return docs::completions(args),
        Command::Man(args) => return docs::man(args),
        Command::LocalCluster(args) => return run::serve_local_cluster(args).await,
        Command::BenchExportChild(args) => return bench::export_child(args).await,
        _ => {}
    }
    let settings = load_settings(&cli)?;
    match cli.command {
        Command::Init(_)
        | Command::Completions(_)
        | Command::Man(_)
        | Command::LocalCluster(_)
        | Command::BenchExportChild(_) => {
            unreachable!("handled above")
        }
        Command::Config(ConfigCommand::Show(args)) => config::show(&settings, &args),
        Command::Sink(SinkCommand::Up(args)) => sink::up(&settings, &args, cli.config.as_deref()).await,
        Command::Sink(SinkCommand::Down) => sink::down(&settings).await,
        Command::Sink(SinkCommand::Status(args)) => sink::status(&settings, &args).await,
        Command::Sink(SinkCommand::Url(args)) => sink::url(&settings, &args),
        Command::Sink(SinkCommand::Render(args)) => render::run(&settings, &args),
        Command::Sink(SinkCommand::PrometheusConfig(args)) => prometheus_config::run(&settings, &args),
        Command::Demo(args) => demo::run(&settings, &args).await,
        Command::Values => {
            print!("{}", greenflow_cluster::helm_values(&settings, cluster::sink_ip_for_route(&settings)?)?);
            Ok(crate::exit::OK)
        }
        Command::Cluster(command) => cluster::run(&settings, command).await,
        Command::Runs(RunsCommand::List(args)) => runs::list(&settings, &args),
        Command::Runs(RunsCommand::Show(args)) => runs::show(&settings, &args),
        Command::Runs(RunsCommand::Recover(args)) => run::recover(&settings, &args).await,
        Command::Run(args) => run::run(&settings, &args).await,
        Command::Export(args) => data::export(&settings, &args).await,
        Command::Archive(args) => match &args.verify {
            Some(ArchiveCommand::Verify(verify)) => data::verify(verify),
            None => data::archive(&settings, &args).await,
        },
        Command::Import(args) => data::import(&settings, &args).await,
        Command::Report(args) => report::run(&settings, &args).await,
        Command::Bench(BenchCommand::Startup(args)) => bench::startup(&settings, &args).await,
        Command::Bench(BenchCommand::Drain(args)) => bench::drain(&settings, &args).await,
        Command::Bench(BenchCommand::Ingest(args)) => bench::ingest(&settings, &args).await,
        Command::Bench(BenchCommand::Data(args)) => bench::data(&settings, &args).await,
        Command::Bench(BenchCommand::Report(args)) => bench::report(&settings, &args).await,
    }
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let settings = Settings::load(cli.config.as_deref(), &cwd, greenflow_config::utf8_vars(std::env::vars_os())?)?;
    if let Some(file) = &settings.config_file {
        tracing::debug!(config = %file.display(), "loaded configuration");
    }
    Ok(settings)
}
