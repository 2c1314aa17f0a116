//! Why the route to the sink carries no writes, read off what the API server shows of Prometheus' pod: the Tailscale
//! sidecar's container state and its last log lines, and the last remote-write error in Prometheus' log. The run
//! appends it to a readiness or first-sample timeout, so the message names the likely cause, not only the symptom.
//!
//! The texts matched are Tailscale's and Prometheus' own: `tailscale up` prints `backend error: invalid key: ...`
//! for a refused auth key (`cmd/tailscale/cli/up.go`, the message from control's register response,
//! `control/controlclient/direct.go`) and containerboot `machine authorization required, please visit the admin
//! panel` for a node that waits for approval (`cmd/containerboot/main.go`); Prometheus logs `Failed to send batch,
//! retrying` with `err="..."` for every failed send (`storage/remote/queue_manager.go`), as both 2.x (`msg=... err=`
//! after `caller=`) and 3.x (`level=WARN source=queue_manager.go`) print it.

use k8s_openapi::api::core::v1::ContainerStatus;
use kube::api::LogParams;

use crate::error::ClusterError;
use crate::kube_cluster::KubeCluster;

/// The container name of the Tailscale sidecar.
const SIDECAR: &str = greenflow_render::TAILSCALE_CONTAINER;

/// How many log lines are read from each container.
const TAIL_LINES: i64 = 40;

/// What the sidecar's container status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarState {
    /// `waiting.reason` (`CrashLoopBackOff`, `ImagePullBackOff`, ...), if it waits.
    pub waiting: Option<String>,
    /// `waiting.message`, if any.
    pub message: Option<String>,
    /// Its startup probe passed.
    pub started: bool,
    /// `restartCount`.
    pub restarts: i32,
    /// The image.
    pub image: String,
}

impl SidecarState {
    fn from_status(status: &ContainerStatus) -> Self {
        let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
        Self {
            waiting: waiting.and_then(|w| w.reason.clone()),
            message: waiting.and_then(|w| w.message.clone()),
            started: status.started.unwrap_or(false),
            restarts: status.restart_count,
            image: status.image.clone(),
        }
    }
}

/// The likely cause, from the sidecar's state and log and Prometheus' log. None when nothing points at one.
pub fn likely_cause(sidecar: Option<&SidecarState>, sidecar_log: &str, prometheus_log: &str) -> Option<String> {
    if let Some(state) = sidecar {
        match state.waiting.as_deref() {
            Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName") => {
                return Some(format!(
                    "the Tailscale sidecar's image {} cannot be pulled ({}): check cluster.tailscale.image and that \
                     the nodes reach its registry",
                    state.image,
                    state.message.as_deref().unwrap_or("no message")
                ));
            }
            Some("CreateContainerConfigError") => {
                return Some(format!(
                    "the Tailscale sidecar cannot start ({}): `greenflow cluster install` with TS_AUTHKEY set creates \
                     its auth-key Secret",
                    state.message.as_deref().unwrap_or("no message")
                ));
            }
            _ => {}
        }
        if !state.started {
            return Some(sidecar_cause(state, sidecar_log));
        }
    }
    let err = last_remote_write_error(prometheus_log)?;
    Some(remote_write_cause(&err))
}

fn sidecar_cause(state: &SidecarState, log: &str) -> String {
    let lower = log.to_ascii_lowercase();
    if lower.contains("invalid key") || lower.contains("invalid api token") || lower.contains("api key does not exist")
    {
        return "the Tailscale sidecar's auth key was refused (expired, revoked, or single-use and used already): \
                create a reusable, ephemeral, pre-approved key tagged tag:greenflow, put it in TS_AUTHKEY and run \
                `greenflow cluster install` again"
            .into();
    }
    if lower.contains("machine authorization required") {
        return "the Tailscale sidecar's node waits for approval in the admin console: use a pre-approved auth key \
                (or approve the device)"
            .into();
    }
    if lower.contains("requested tags") {
        return "the auth key asks for tags the tailnet policy does not allow: add tag:greenflow to tagOwners".into();
    }
    let how = match &state.waiting {
        Some(reason) => format!("{reason}, {} restarts", state.restarts),
        None => "running, no tailnet address yet".into(),
    };
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no log)");
    format!("the Tailscale sidecar has not joined the tailnet ({how}); its last log line: {}", last.trim())
}

/// The `err="..."` of Prometheus' last `Failed to send batch` line (unescaped), if any.
pub fn last_remote_write_error(log: &str) -> Option<String> {
    log.lines().rev().filter(|l| l.contains("Failed to send batch")).find_map(|line| {
        let start = line.find("err=\"")? + 5;
        let mut out = String::new();
        let mut chars = line[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        Some(out)
    })
}

fn remote_write_cause(err: &str) -> String {
    let hint = if err.contains("proxyconnect") || err.contains("Tailscale-Connect-Error") {
        "the Tailscale sidecar's proxy cannot reach the sink: is the sink's machine up on the tailnet, and does the \
         tailnet policy let tag:greenflow reach it on its HTTPS port?"
    } else if err.contains("x509") || err.contains("tls:") {
        "TLS fails on the route: the sink's certificate must name the host Prometheus asks for (the tailnet name in \
         sink.public_host, or cluster.tls_server_name)"
    } else if err.contains("no such host") || err.contains("server misbehaving") {
        "the pod cannot resolve the sink's name: a tailnet name needs cluster.reach sidecar, nodes or operator"
    } else if err.contains("421") {
        "the sink answers to another name than the one in the URL (421): check cluster.reach and sink.public_host"
    } else if err.contains("401") {
        "the sink refuses the cluster's credential (401): run `greenflow cluster install` again to refresh the \
         remote-write Secret"
    } else if err.contains("connection refused") || err.contains("timeout") || err.contains("deadline exceeded") {
        "the sink does not answer on the route: is `greenflow sink up` running, and is its public site reachable?"
    } else {
        "Prometheus cannot write to the sink"
    };
    format!("{hint} (Prometheus: {err})")
}

impl KubeCluster {
    /// The likely cause of a route that carries no writes, from Prometheus' newest pod (see [`likely_cause`]).
    /// None when there is no pod or nothing points at a cause.
    pub async fn diagnose_route(&self) -> Result<Option<String>, ClusterError> {
        let objects = self.prometheus_pod_objects().await?;
        let Some(pod) = objects.iter().find(|p| p.metadata.deletion_timestamp.is_none()) else { return Ok(None) };
        let pods = self.pod_api();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let sidecar = status
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten())
            .find(|c| c.name == SIDECAR)
            .map(SidecarState::from_status);
        // A log that cannot be read (a container waiting to start) is only missing evidence.
        let log = |container: &'static str| {
            let pods = pods.clone();
            let pod_name = pod_name.clone();
            async move {
                let params = LogParams {
                    container: Some(container.into()),
                    tail_lines: Some(TAIL_LINES),
                    ..LogParams::default()
                };
                pods.logs(&pod_name, &params).await.unwrap_or_default()
            }
        };
        let sidecar_log = if sidecar.is_some() { log(SIDECAR).await } else { String::new() };
        let prometheus_log = log("prometheus").await;
        Ok(likely_cause(sidecar.as_ref(), &sidecar_log, &prometheus_log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines printed by the real Prometheus 2.42 and 3.5.3 agents (remote write through a refused proxy, to an
    /// unresolvable tailnet name, and to a site with no certificate for the name).
    const PROMETHEUS_2: &str = r#"ts=2026-12-02T06:08:01.001Z caller=dedupe.go:112 component=remote level=warn remote_name=greenflow-sink url=https://laptop.tail1234.ts.net/vm/api/v1/write msg="Failed to send batch, retrying" err="Post \"https://laptop.tail1234.ts.net/vm/api/v1/write\": proxyconnect tcp: dial tcp 127.0.0.1:1: connect: connection refused""#;
    const PROMETHEUS_3_DNS: &str = r#"time=2026-12-02T06:08:12.120Z level=WARN source=queue_manager.go:2027 msg="Failed to send batch, retrying" component=remote remote_name=nodns url=https://laptop.tail1234.ts.net/vm/api/v1/write err="Post \"https://laptop.tail1234.ts.net/vm/api/v1/write\": dial tcp: lookup laptop.tail1234.ts.net on 10.255.255.53:53: no such host""#;
    const PROMETHEUS_2_TLS: &str = r#"ts=2026-12-02T06:08:03.001Z caller=dedupe.go:112 component=remote level=warn remote_name=tls url=https://127.0.0.5:8443/vm/api/v1/write msg="Failed to send batch, retrying" err="Post \"https://127.0.0.5:8443/vm/api/v1/write\": remote error: tls: internal error""#;

    fn crash_looping() -> SidecarState {
        SidecarState {
            waiting: Some("CrashLoopBackOff".into()),
            message: None,
            started: false,
            restarts: 4,
            image: "ghcr.io/tailscale/tailscale:v1.102.3".into(),
        }
    }

    #[test]
    fn prometheus_errors_of_both_generations_are_read_and_named() {
        assert_eq!(
            last_remote_write_error(PROMETHEUS_2).unwrap(),
            "Post \"https://laptop.tail1234.ts.net/vm/api/v1/write\": proxyconnect tcp: dial tcp 127.0.0.1:1: connect: connection refused"
        );
        let cause = likely_cause(None, "", PROMETHEUS_2).unwrap();
        assert!(cause.starts_with("the Tailscale sidecar's proxy cannot reach the sink"), "{cause}");
        let cause = likely_cause(None, "", PROMETHEUS_3_DNS).unwrap();
        assert!(cause.starts_with("the pod cannot resolve the sink's name"), "{cause}");
        assert!(cause.contains("no such host"), "{cause}");
        let cause = likely_cause(None, "", PROMETHEUS_2_TLS).unwrap();
        assert!(cause.starts_with("TLS fails on the route"), "{cause}");
        // The newest error wins; a log without one names nothing.
        let both = format!("{PROMETHEUS_2}\n{PROMETHEUS_3_DNS}\n");
        assert!(likely_cause(None, "", &both).unwrap().contains("resolve"));
        assert_eq!(likely_cause(None, "", "level=INFO msg=\"Server is ready to receive web requests.\""), None);
    }

    #[test]
    fn the_sidecars_state_and_last_words_name_the_cause_before_prometheus_log() {
        let refused = "boot: 2026/12/02 06:00:01 failed to auth tailscale: failed to auth tailscale: tailscale up failed: exit status 1\nbackend error: invalid key: API key kABC123CNTRL not valid\n";
        let cause = likely_cause(Some(&crash_looping()), refused, PROMETHEUS_2).unwrap();
        assert!(cause.contains("auth key was refused") && cause.contains("TS_AUTHKEY"), "{cause}");
        let waiting = "boot: 2026/12/02 06:00:01 machine authorization required, please visit the admin panel";
        let running = SidecarState { waiting: None, ..crash_looping() };
        assert!(likely_cause(Some(&running), waiting, "").unwrap().contains("waits for approval"));
        let unknown = likely_cause(Some(&crash_looping()), "boot: something else went wrong\n\n", "").unwrap();
        assert!(
            unknown.contains("CrashLoopBackOff, 4 restarts") && unknown.ends_with("boot: something else went wrong")
        );
        let pull = SidecarState {
            waiting: Some("ImagePullBackOff".into()),
            message: Some("Back-off pulling image \"ghcr.io/tailscale/tailscale:v9\"".into()),
            ..crash_looping()
        };
        assert!(likely_cause(Some(&pull), "", "").unwrap().contains("cluster.tailscale.image"));
        // A sidecar that joined hands over to Prometheus' log.
        let joined = SidecarState { waiting: None, started: true, ..crash_looping() };
        assert!(likely_cause(Some(&joined), "", PROMETHEUS_2).unwrap().contains("proxy cannot reach"));
        assert_eq!(likely_cause(Some(&joined), "", ""), None);
    }
}
