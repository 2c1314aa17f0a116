//! `greenflow sink prometheus-config`: the prometheus.yml of a Prometheus outside Kubernetes that writes into the
//! sink, from the same renderer and settings as the local stand-in cluster.

use std::collections::BTreeMap;

use anyhow::anyhow;
use greenflow_config::Settings;
use greenflow_render::{ScrapeJob, render_agent_config};
use greenflow_runs::sink_agent_input;
use greenflow_sink::loopback_urls;

use crate::cli::SinkPrometheusConfigArgs;

/// Prints the configuration on stdout.
pub fn run(settings: &Settings, args: &SinkPrometheusConfigArgs) -> anyhow::Result<u8> {
    let remote_write_url = if args.public {
        settings
            .public_address()?
            .ok_or_else(|| {
                anyhow!(
                    "no public address configured: set sink.public_host in greenflow.yaml (e.g. \
                     laptop.tail1234.ts.net), or NODENAME and TAILSCALE_DOMAIN"
                )
            })?
            .remote_write_url
    } else {
        loopback_urls(settings).remote_write_url
    };
    let labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    let input = sink_agent_input(
        settings,
        &labels,
        vec![ScrapeJob { name: "prometheus".into(), target: args.self_target.clone() }],
        &remote_write_url,
        &settings.config.sink.writer_username(),
        &args.password_file.to_string_lossy(),
    );
    let text = render_agent_config(&input)?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(crate::exit::OK)
}
