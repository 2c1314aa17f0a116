//! Renders the files greenflow generates, from the askama templates in the repository's `templates/` folder.
//!
//! Each renderer takes a small input struct of plain values (no configuration lookups, no I/O), checks that every
//! value can be carried exactly by the target format, renders it with an escaper made for that format, and for the
//! structured formats parses the result back as a check. It never writes files or starts anything.

mod caddy;
pub mod escape;
mod grafana;
mod helm;
mod prometheus;

pub use caddy::{AuthDirective, CaddyfileInput, SiteAlias, render_caddyfile};
pub use grafana::{DASHBOARD_JSON, DATASOURCE_UID, GrafanaFiles, GrafanaInput, render_grafana};
pub use helm::{
    EgressService, HelmRemoteWrite, HelmValuesInput, HostAlias, TAILSCALE_CONTAINER, TAILSCALE_HEALTH_PORT,
    TailscaleSidecar, deep_merge, render_helm_values,
};
pub use prometheus::{AgentConfigInput, QueueConfig, RemoteWriteTarget, ScrapeJob, render_agent_config};

/// Why a file could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A value the target format cannot carry exactly (it would be changed or could inject syntax).
    #[error("{field}: `{value}` cannot be used: {reason}")]
    Unsafe {
        /// The setting the value came from.
        field: String,
        /// The value, with control characters escaped.
        value: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// The template engine failed.
    #[error("cannot render {template}")]
    Template {
        /// The template's name.
        template: &'static str,
        /// askama's error.
        #[source]
        source: askama::Error,
    },
    /// The rendered document did not parse back: a bug in a template.
    #[error("rendered {template} does not parse back (a greenflow bug; please report it)")]
    Reparse {
        /// The template's name.
        template: &'static str,
        /// The parser's error.
        #[source]
        source: serde_yaml::Error,
    },
}

impl RenderError {
    pub(crate) fn unsafe_value(field: &str, value: &str, reason: &str) -> Self {
        Self::Unsafe { field: field.to_owned(), value: value.escape_debug().to_string(), reason: reason.to_owned() }
    }

    pub(crate) fn template(template: &'static str) -> impl FnOnce(askama::Error) -> Self {
        move |source| Self::Template { template, source }
    }
}

/// Parses rendered YAML back, proving the template produced a valid document.
pub(crate) fn reparse_yaml(template: &'static str, text: &str) -> Result<serde_yaml::Value, RenderError> {
    serde_yaml::from_str(text).map_err(|source| RenderError::Reparse { template, source })
}

#[cfg(test)]
mod tests;
