//! `greenflow sink render`: the sink's Caddyfile and Grafana files for a service manager, from the same renderers as
//! `sink up`, with no secret in them (the Nix modules build them into the store).

use anyhow::Context;
use greenflow_config::Settings;
use greenflow_sink::{RenderSecrets, render_config};

use crate::cli::SinkRenderArgs;
use crate::exit;

/// Renders into `--out` and lists the files written.
pub fn run(settings: &Settings, args: &SinkRenderArgs) -> anyhow::Result<u8> {
    let secrets = RenderSecrets {
        grafana_admin_password_file: args.grafana_admin_password_file.clone(),
        grafana_secret_key_file: args.grafana_secret_key_file.clone(),
        grafana_datasource_password_file: args.grafana_datasource_password_file.clone(),
    };
    let rendered = render_config(settings, &args.out, &secrets, &args.bind)
        .with_context(|| format!("cannot render the sink's configuration into `{}`", args.out.display()))?;
    println!("{}", rendered.caddyfile.display());
    for path in [&rendered.grafana_ini, &rendered.grafana_datasources, &rendered.grafana_dashboard_providers]
        .into_iter()
        .flatten()
    {
        println!("{}", path.display());
    }
    Ok(exit::OK)
}
