//! The Caddyfile of the sink: a loopback site and, when configured, the public site, both with the same routes.

use askama::Template;

use crate::RenderError;
use crate::escape::check_caddy_token;

/// Which spelling of the basic-auth directive the installed Caddy understands (`greenflow_sink::versions` picks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDirective {
    /// `basicauth`: Caddy 2.6 and 2.7.
    Basicauth,
    /// `basic_auth`: Caddy 2.8 and later (where `basicauth` is deprecated).
    BasicAuth,
}

impl AuthDirective {
    fn as_str(self) -> &'static str {
        match self {
            Self::Basicauth => "basicauth",
            Self::BasicAuth => "basic_auth",
        }
    }
}

/// What the Caddyfile needs.
#[derive(Debug, Clone)]
pub struct CaddyfileInput {
    /// Admin API address: a unix socket, `unix//path/to/admin.sock`, in a directory of mode 0700.
    pub admin_listen: String,
    /// Port of the loopback site.
    pub loopback_port: u16,
    /// Public site address (`https://laptop.tail1234.ts.net`), already validated as scheme + host + port.
    pub public_site: Option<String>,
    /// The addresses the public site listens on (a tailnet site: this machine's tailnet addresses); empty: every
    /// interface.
    pub public_bind: Vec<std::net::IpAddr>,
    /// Basic-auth user name (setting `sink.username`).
    pub username: String,
    /// bcrypt hash of the password (`$2b$...`).
    pub password_hash: String,
    /// The writer's user name: the credential the cluster holds, good for remote write only.
    pub writer_username: String,
    /// bcrypt hash of the writer's password.
    pub writer_password_hash: String,
    /// The reader's user name: Grafana's credential, good for the query API only.
    pub reader_username: String,
    /// bcrypt hash of the reader's password.
    pub reader_password_hash: String,
    /// VictoriaMetrics' address, e.g. `127.0.0.1:8428`.
    pub victoria_metrics: String,
    /// Grafana's address, when it runs.
    pub grafana: Option<String>,
    /// The directive spelling for the installed Caddy.
    pub auth_directive: AuthDirective,
    /// Other names the public site answers to, with why (the Tailscale operator's egress Service name, which the
    /// cluster's requests carry as their Host while TLS names the public site).
    pub public_aliases: Vec<SiteAlias>,
    /// The loopback port of the write-only site that Tailscale Funnel publishes, for `cluster.reach: funnel`.
    pub funnel_port: Option<u16>,
}

/// Another address of the public site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAlias {
    /// The site address, `https://name[:port]`.
    pub address: String,
    /// Why the site has it, for the comment in the file.
    pub why: String,
}

#[derive(Template)]
#[template(path = "caddy/Caddyfile.caddy")]
struct CaddyfileTemplate<'a> {
    admin_listen: &'a str,
    loopback_port: u16,
    public_site: Option<&'a str>,
    public_bind: String,
    tailnet: bool,
    username: &'a str,
    password_hash: &'a str,
    writer_username: &'a str,
    writer_password_hash: &'a str,
    reader_username: &'a str,
    reader_password_hash: &'a str,
    victoria_metrics: &'a str,
    grafana: Option<&'a str>,
    auth_directive: &'a str,
    public_aliases: &'a [SiteAlias],
    public_catch_all: String,
    public_host: String,
    funnel_port: Option<u16>,
}

/// Renders the Caddyfile. Fails if the user name cannot be carried exactly by a Caddyfile token.
pub fn render_caddyfile(input: &CaddyfileInput) -> Result<String, RenderError> {
    check_caddy_token("sink.username", &input.username)?;
    check_caddy_token("sink password hash", &input.password_hash)?;
    check_caddy_token("sink.username (the writer's name: `<sink.username>-writer`)", &input.writer_username)?;
    check_caddy_token("sink writer password hash", &input.writer_password_hash)?;
    check_caddy_token("sink.username (the reader's name: `<sink.username>-reader`)", &input.reader_username)?;
    check_caddy_token("sink reader password hash", &input.reader_password_hash)?;
    check_caddy_token("the Caddy admin socket's path (paths.state_dir)", &input.admin_listen)?;
    let public_site = input.public_site.as_deref();
    for alias in &input.public_aliases {
        check_caddy_token("the public site's alias", &alias.address)?;
    }
    // `scheme://host[:port]`: the catch-all takes the same scheme and port with no host.
    let (scheme, authority) = public_site.and_then(|s| s.split_once("://")).unwrap_or(("https", ""));
    let default_port = if scheme == "http" { "80" } else { "443" };
    let (public_host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => (host, port),
        _ => (authority, default_port),
    };
    CaddyfileTemplate {
        admin_listen: &input.admin_listen,
        loopback_port: input.loopback_port,
        public_site,
        public_bind: input.public_bind.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        tailnet: public_site
            .is_some_and(|s| s.trim_end_matches(|c: char| c.is_ascii_digit() || c == ':').ends_with(".ts.net")),
        username: &input.username,
        password_hash: &input.password_hash,
        writer_username: &input.writer_username,
        writer_password_hash: &input.writer_password_hash,
        reader_username: &input.reader_username,
        reader_password_hash: &input.reader_password_hash,
        victoria_metrics: &input.victoria_metrics,
        grafana: input.grafana.as_deref(),
        auth_directive: input.auth_directive.as_str(),
        public_aliases: &input.public_aliases,
        public_catch_all: format!("{scheme}://:{port}"),
        public_host: public_host.to_owned(),
        funnel_port: input.funnel_port,
    }
    .render()
    .map_err(RenderError::template("caddy/Caddyfile.caddy"))
}
