//! This machine's tailnet addresses, for the public site of a `*.ts.net` name: Caddy binds them and nothing else, so
//! the site with the sink's credentials is not served on the machine's other networks.
//!
//! They come from `tailscale status --json`, whose shape is Tailscale's `ipnstate.Status` (`ipn/ipnstate/
//! ipnstate.go`): `BackendState` (`Running` once the node is up; `NeedsLogin`, `Stopped`, `Starting` otherwise) and
//! `Self`, a `PeerStatus` with `TailscaleIPs` (the node's IPv4 and IPv6 tailnet addresses) and `DNSName` (its
//! MagicDNS name, with a trailing dot).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::SinkError;

/// How long `tailscale status` may take (it asks tailscaled over its local socket).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The part of `tailscale status --json` greenflow reads.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(rename = "BackendState", default)]
    backend_state: String,
    #[serde(rename = "Self")]
    this_node: Option<Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    #[serde(rename = "TailscaleIPs", default)]
    tailscale_ips: Vec<IpAddr>,
    #[serde(rename = "DNSName", default)]
    dns_name: String,
}

/// This machine's tailnet addresses, from `tailscale` (found on `search_path`), checked against `host` (the public
/// name): Tailscale must be up, and this machine must be that name.
pub fn tailnet_addresses(host: &str, search_path: &str) -> Result<Vec<IpAddr>, SinkError> {
    let fail = |detail: String| SinkError::Tailnet { host: host.to_owned(), detail };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let tailscale = which::which_in("tailscale", Some(search_path), &cwd).map_err(|_| {
        fail("`tailscale` is not on PATH: install Tailscale (Debian package `tailscale`, nixpkgs `tailscale`) and run `tailscale up`".into())
    })?;
    let output = run_status(&tailscale).map_err(|e| fail(format!("`tailscale status --json` failed: {e}")))?;
    parse_status(host, &output).map_err(fail)
}

fn run_status(tailscale: &Path) -> Result<String, String> {
    run_tailscale(tailscale, &["status", "--json"])
}

/// Runs `tailscale` with `args` (bounded by [`STATUS_TIMEOUT`]); its stdout, or its exit status and first line of
/// stderr.
fn run_tailscale(tailscale: &Path, args: &[&str]) -> Result<String, String> {
    // A cleared environment plus the basics: TS_AUTHKEY and the sink's secrets are not the CLI's to see.
    let env = crate::supervisor::INHERITED_ENV.iter().filter_map(|name| std::env::var_os(name).map(|v| (*name, v)));
    let expression = duct::cmd(tailscale, args).full_env(env).stdout_capture().stderr_capture().unchecked();
    let handle = expression.start().map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + STATUS_TIMEOUT;
    loop {
        if let Some(output) = handle.try_wait().map_err(|e| e.to_string())? {
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let first = stderr.lines().next().unwrap_or("").trim();
                return Err(format!("{} ({first})", output.status));
            }
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        if std::time::Instant::now() >= deadline {
            let _ = handle.kill();
            return Err(format!("no answer within {}s: is tailscaled running?", STATUS_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sink's write-only site published on the internet by Tailscale Funnel (`cluster.reach: funnel`), until
/// [`Funnel::unpublish`].
#[derive(Debug, Clone)]
pub struct Funnel {
    tailscale: std::path::PathBuf,
    host: String,
    public_port: u16,
}

impl Funnel {
    /// Publishes `http://127.0.0.1:<local_port>` as `https://<host>:<public_port>` in the background
    /// (`tailscale funnel --bg --yes --https=<port> <target>`, `cmd/tailscale/cli/serve_v2.go`); tailscaled keeps
    /// it until it is turned off.
    pub fn publish(host: &str, public_port: u16, local_port: u16, search_path: &str) -> Result<Self, SinkError> {
        let fail = |detail: String| SinkError::Tailnet { host: host.to_owned(), detail };
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        let tailscale = which::which_in("tailscale", Some(search_path), &cwd)
            .map_err(|_| fail("cluster.reach `funnel` needs `tailscale` on PATH".into()))?;
        let https = format!("--https={public_port}");
        let target = format!("http://127.0.0.1:{local_port}");
        run_tailscale(&tailscale, &["funnel", "--bg", "--yes", &https, &target]).map_err(|e| {
            fail(format!(
                "`tailscale funnel` failed: {e}; Funnel must be allowed for this node in the tailnet policy \
                 (nodeAttrs `funnel`) and HTTPS certificates enabled"
            ))
        })?;
        Ok(Self { tailscale, host: host.to_owned(), public_port })
    }

    /// Turns the Funnel off again (`tailscale funnel --https=<port> off`).
    pub fn unpublish(&self) -> Result<(), SinkError> {
        let https = format!("--https={}", self.public_port);
        run_tailscale(&self.tailscale, &["funnel", &https, "off"]).map(drop).map_err(|e| SinkError::Tailnet {
            host: self.host.clone(),
            detail: format!("`tailscale funnel off` failed: {e}"),
        })
    }
}

/// The addresses in `tailscale status --json` output, or why they cannot be used.
fn parse_status(host: &str, json: &str) -> Result<Vec<IpAddr>, String> {
    let status: Status =
        serde_json::from_str(json).map_err(|e| format!("`tailscale status --json` printed something else ({e})"))?;
    if status.backend_state != "Running" {
        return Err(format!("Tailscale is not up (state `{}`): run `tailscale up`", status.backend_state));
    }
    let node = status.this_node.ok_or("`tailscale status --json` has no `Self` node: run `tailscale up`")?;
    let name = node.dns_name.trim_end_matches('.');
    if !name.eq_ignore_ascii_case(host) {
        return Err(format!(
            "this machine is `{name}` on the tailnet: set sink.public_host to `{name}` (or NODENAME and TAILSCALE_DOMAIN to match)"
        ));
    }
    if node.tailscale_ips.is_empty() {
        return Err("Tailscale gives this machine no tailnet address yet: wait for `tailscale ip` to print one".into());
    }
    Ok(node.tailscale_ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from `tailscale status --json` of Tailscale 1.9x on Linux (`ipn/ipnstate/ipnstate.go` field names).
    const RUNNING: &str = r#"{
      "Version": "1.90.6-t0123456789-gabcdef012",
      "TUN": true,
      "BackendState": "Running",
      "HaveNodeKey": true,
      "AuthURL": "",
      "TailscaleIPs": ["100.101.102.103", "fd7a:115c:a1e0::1234:5678"],
      "Self": {
        "ID": "nTAb1CNTRL",
        "PublicKey": "nodekey:0123",
        "HostName": "laptop",
        "DNSName": "laptop.tail1234.ts.net.",
        "OS": "linux",
        "TailscaleIPs": ["100.101.102.103", "fd7a:115c:a1e0::1234:5678"],
        "Online": true
      },
      "MagicDNSSuffix": "tail1234.ts.net",
      "CurrentTailnet": {"Name": "lab@example.org", "MagicDNSSuffix": "tail1234.ts.net", "MagicDNSEnabled": true},
      "Peer": {}
    }"#;

    #[test]
    fn the_running_nodes_addresses_are_read() {
        let ips = parse_status("laptop.tail1234.ts.net", RUNNING).unwrap();
        assert_eq!(ips, ["100.101.102.103".parse::<IpAddr>().unwrap(), "fd7a:115c:a1e0::1234:5678".parse().unwrap()]);
        assert!(parse_status("LAPTOP.tail1234.ts.net", RUNNING).is_ok());
    }

    #[test]
    fn a_node_that_is_not_up_or_not_this_name_is_refused_with_the_fix() {
        let stopped = RUNNING.replace("\"Running\"", "\"NeedsLogin\"");
        assert!(
            parse_status("laptop.tail1234.ts.net", &stopped).unwrap_err().contains("`NeedsLogin`): run `tailscale up`")
        );
        let err = parse_status("desktop.tail1234.ts.net", RUNNING).unwrap_err();
        assert!(err.contains("set sink.public_host to `laptop.tail1234.ts.net`"), "{err}");
        assert!(
            parse_status("laptop.tail1234.ts.net", "tailscaled is not running")
                .unwrap_err()
                .contains("printed something else")
        );
        let no_self = r#"{"BackendState": "Running"}"#;
        assert!(parse_status("laptop.tail1234.ts.net", no_self).unwrap_err().contains("no `Self` node"));
    }
}
