//! The cluster's route to the sink (`cluster.reach`): where remote write goes, through what, and with which TLS
//! name. Pods of a fresh cluster cannot resolve `*.ts.net` names and its nodes are usually not on the tailnet, so a
//! tailnet name alone reaches nothing; each route is one way around that:
//!
//! - `sidecar`: a Tailscale container in the Prometheus pod, whose outbound HTTP proxy dials the tailnet name
//!   (tailscaled's proxy resolves MagicDNS names, `net/tsdial/tsdial.go`); remote write sets `proxyUrl`.
//! - `funnel`: the sink publishes a write-only site with Tailscale Funnel; the URL is the public `*.ts.net` name.
//! - `nodes`: the nodes are on the tailnet; the pod maps the tailnet name to the sink's tailnet IP (`hostAliases`),
//!   so the URL, the TLS name and the HTTP `Host` all stay the name Caddy serves.
//! - `operator`: the Tailscale operator proxies an egress Service to the tailnet name; remote write goes to that
//!   Service with `tlsConfig.serverName` set to the name.
//! - `direct`: the URL as given.

use std::net::IpAddr;

use greenflow_config::{PublicAddress, Reach, Settings};
use greenflow_render::{EgressService, TailscaleSidecar};

use crate::error::ClusterError;

/// Where and how the cluster's Prometheus writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The route.
    pub reach: Reach,
    /// Why this route: `cluster.reach`, or the default that follows from the public address.
    pub chosen_by: &'static str,
    /// The remote-write URL.
    pub url: String,
    /// The HTTP proxy remote write goes through, if any.
    pub proxy_url: Option<String>,
    /// The TLS server name, when the URL's host is not the certificate's.
    pub tls_server_name: Option<String>,
    /// Entries of the pod's `/etc/hosts`: an IP and the names that resolve to it.
    pub host_aliases: Vec<(IpAddr, String)>,
    /// The Tailscale sidecar, for `sidecar`.
    pub sidecar: Option<TailscaleSidecar>,
    /// The egress Service, for `operator`.
    pub egress: Option<EgressService>,
}

impl Route {
    /// One line for `cluster status` and the run's start, e.g. `sidecar (default for a tailnet name): ...`.
    pub fn describe(&self) -> String {
        let how = match self.reach {
            Reach::Sidecar => format!(
                "through the Tailscale sidecar's proxy {} (node {})",
                self.proxy_url.as_deref().unwrap_or_default(),
                self.sidecar.as_ref().map(|s| s.hostname.as_str()).unwrap_or_default()
            ),
            Reach::Funnel => "over the internet to the sink's Tailscale Funnel site".to_owned(),
            Reach::Nodes => format!(
                "over the nodes' tailnet, {} resolved in the pod",
                self.host_aliases.iter().map(|(ip, name)| format!("{name} -> {ip}")).collect::<Vec<_>>().join(", ")
            ),
            Reach::Operator => format!(
                "through the Tailscale operator's egress Service {}",
                self.egress.as_ref().map(|e| e.name.as_str()).unwrap_or_default()
            ),
            Reach::Direct => "straight to the URL".to_owned(),
        };
        format!("{} ({}): {} {how}", self.reach, self.chosen_by, self.url)
    }
}

/// The default route for a public address: `sidecar` for an https tailnet name, `direct` for anything else.
pub fn default_reach(public: &PublicAddress) -> Reach {
    if public.is_tailnet() && public.scheme == "https" { Reach::Sidecar } else { Reach::Direct }
}

/// The ports Tailscale Funnel publishes (`tsnet/tsnet.go`: "Funnel currently supports TCP on ports 443, 8443, and
/// 10000").
pub const FUNNEL_PORTS: [u16; 3] = [443, 8443, 10000];

/// The tailnet node name of the sidecar: `cluster.tailscale.hostname`, else `greenflow-<deployment>` made a DNS label
/// (lower case, runs of anything else as one '-', at most 63 characters).
pub fn sidecar_hostname(settings: &Settings) -> String {
    let tailscale = &settings.config.cluster.tailscale;
    if let Some(hostname) = &tailscale.hostname {
        return hostname.clone();
    }
    let mut name = String::from("greenflow-");
    for c in settings.config.cluster.deployment.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(63);
    let trimmed = name.trim_end_matches('-');
    if trimmed == "greenflow" { "greenflow-prometheus".to_owned() } else { trimmed.to_owned() }
}

/// The route for these settings. `sink_ip` is the sink's tailnet IP for `nodes` when `cluster.tailscale.sink_ip`
/// is unset (the caller reads it from `tailscale status --json`).
pub fn route(settings: &Settings, sink_ip: Option<IpAddr>) -> Result<Route, ClusterError> {
    let public = settings.public_address()?.ok_or(ClusterError::NoPublicAddress)?;
    let cluster = &settings.config.cluster;
    let tailscale = &cluster.tailscale;
    let (reach, chosen_by) = match cluster.reach {
        Some(reach) => (reach, "cluster.reach"),
        None if default_reach(&public) == Reach::Sidecar => (Reach::Sidecar, "default for a tailnet name"),
        None => (Reach::Direct, "default for an address that is not a tailnet name"),
    };
    let needs_tailnet_name = |why: &str| {
        if public.is_tailnet() && public.scheme == "https" {
            Ok(())
        } else {
            Err(ClusterError::Route {
                reach,
                fix: format!(
                    "{why}, so the sink's address must be an https tailnet name such as laptop.tail1234.ts.net (it is \
                     {}); set sink.public_host to this machine's tailnet name, or cluster.reach: direct",
                    public.base_url()
                ),
            })
        }
    };
    let mut route = Route {
        reach,
        chosen_by,
        url: public.remote_write_url.clone(),
        proxy_url: None,
        tls_server_name: cluster.tls_server_name.clone(),
        host_aliases: Vec::new(),
        sidecar: None,
        egress: None,
    };
    match reach {
        Reach::Sidecar => {
            needs_tailnet_name("the sidecar dials the sink by its tailnet name")?;
            route.proxy_url = Some(format!("http://127.0.0.1:{}", tailscale.proxy_port));
            route.sidecar = Some(TailscaleSidecar {
                image: tailscale.image.clone(),
                hostname: sidecar_hostname(settings),
                auth_key_secret: tailscale.auth_key_secret.clone(),
                proxy_port: tailscale.proxy_port,
                cpu_request: tailscale.cpu_request.clone(),
                memory: tailscale.memory.clone(),
                tags: tailscale.tags.clone(),
            });
        }
        Reach::Funnel => {
            needs_tailnet_name("Funnel publishes the sink under its tailnet name")?;
            let port = public.port.unwrap_or(443);
            if !FUNNEL_PORTS.contains(&port) {
                return Err(ClusterError::Route {
                    reach,
                    fix: format!(
                        "Funnel publishes only ports 443, 8443 and 10000, not {port}: drop the port from \
                         sink.public_host or use one of those"
                    ),
                });
            }
        }
        Reach::Nodes => {
            needs_tailnet_name("the nodes reach the sink on the tailnet and TLS checks its tailnet name")?;
            let ip = tailscale.sink_ip.or(sink_ip).ok_or_else(|| ClusterError::Route {
                reach,
                fix: "the pod needs the sink's tailnet IP: set cluster.tailscale.sink_ip (`tailscale ip -4` on the \
                      sink), or run greenflow where `tailscale status` shows the sink"
                    .to_owned(),
            })?;
            route.host_aliases = vec![(ip, public.host.clone())];
        }
        Reach::Operator => {
            needs_tailnet_name("the operator proxies to the sink's tailnet name")?;
            let service = cluster.egress_service_host();
            let port = public.port.map(|p| format!(":{p}")).unwrap_or_default();
            route.url = format!("https://{service}{port}/vm/api/v1/write");
            route.tls_server_name = Some(public.host.clone());
            route.egress = Some(EgressService {
                name: tailscale.egress_service.clone(),
                tailnet_fqdn: public.host.clone(),
                port: public.port.unwrap_or(443),
            });
        }
        Reach::Direct => {}
    }
    Ok(route)
}
