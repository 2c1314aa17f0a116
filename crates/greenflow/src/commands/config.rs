//! `greenflow config show`.

use greenflow_config::{SecretVar, Settings};
use serde_json::json;

use crate::cli::FormatArgs;
use crate::exit;

/// Prints the effective configuration. Secrets appear only as "set" or "not set".
pub fn show(settings: &Settings, args: &FormatArgs) -> anyhow::Result<u8> {
    let secrets: serde_json::Map<String, serde_json::Value> = SecretVar::ALL
        .iter()
        .map(|var| {
            let state = if settings.env.secret(*var).is_some() { "set" } else { "not set" };
            (var.names()[0].to_owned(), json!(state))
        })
        .collect();
    let public = settings.public_address()?;
    let config_file = settings.config_file.as_ref().map(|p| p.display().to_string());
    let secrets_file = settings.env.secrets_file().map(|p| p.display().to_string());
    if args.json {
        let value = json!({
            "config_file": config_file,
            "secrets_file": secrets_file,
            "paths": { "data_dir": settings.paths.data_dir, "state_dir": settings.paths.state_dir },
            "public_remote_write_url": public.as_ref().map(|p| &p.remote_write_url),
            "secrets": secrets,
            "config": settings.config,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(exit::OK);
    }
    println!("# config file:   {}", config_file.as_deref().unwrap_or("none (defaults)"));
    println!("# secrets file:  {}", secrets_file.as_deref().unwrap_or("none"));
    println!("# data dir:      {}", settings.paths.data_dir.display());
    println!("# state dir:     {}", settings.paths.state_dir.display());
    println!(
        "# public write:  {}",
        public.as_ref().map(|p| p.remote_write_url.as_str()).unwrap_or("none (set sink.public_host)")
    );
    for (name, state) in &secrets {
        println!("# {name}: {}", state.as_str().unwrap_or_default());
    }
    print!("{}", serde_yaml::to_string(&settings.config)?);
    Ok(exit::OK)
}
