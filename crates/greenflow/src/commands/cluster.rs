//! `greenflow cluster install | status | uninstall`.

use anyhow::Context;
use greenflow_cluster::{ClusterStatus, InstallPlan, KubeCluster, REMOTE_NAME};
use greenflow_config::Settings;
use greenflow_runs::drain::{QueueMetrics, parse_queue_metrics};
use serde_json::{Value, json};

use crate::cli::{ClusterCommand, ClusterInstallArgs, ClusterUninstallArgs, FormatArgs};
use crate::exit;
use crate::ui::Progress;

/// Runs one `cluster` verb.
pub async fn run(settings: &Settings, command: ClusterCommand) -> anyhow::Result<u8> {
    match command {
        ClusterCommand::Install(args) => install(settings, &args).await,
        ClusterCommand::Status(args) => status(settings, &args).await,
        ClusterCommand::Uninstall(args) => uninstall(settings, &args).await,
        ClusterCommand::Rbac => {
            print!("{}", greenflow_cluster::rbac::render_rbac(&settings.config.cluster.namespace, "greenflow"));
            Ok(exit::OK)
        }
    }
}

/// The sink's tailnet IP for the `nodes` route when `cluster.tailscale.sink_ip` is unset: this machine's, from
/// `tailscale status --json` (IPv4 first). None for every other route.
pub fn sink_ip_for_route(settings: &Settings) -> anyhow::Result<Option<std::net::IpAddr>> {
    let Some(public) = settings.public_address()? else { return Ok(None) };
    let reach = settings.config.cluster.reach.unwrap_or_else(|| greenflow_cluster::default_reach(&public));
    if reach != greenflow_config::Reach::Nodes || settings.config.cluster.tailscale.sink_ip.is_some() {
        return Ok(None);
    }
    let addresses = greenflow_sink::tailnet_addresses(&public.host, settings.env.get("PATH").unwrap_or_default())
        .context("cluster.reach `nodes` needs the sink's tailnet IP (or set cluster.tailscale.sink_ip)")?;
    Ok(addresses.iter().find(|ip| ip.is_ipv4()).or(addresses.first()).copied())
}

async fn install(settings: &Settings, args: &ClusterInstallArgs) -> anyhow::Result<u8> {
    // The route's auth key, helm and the values first: nothing is touched when one is missing. A dry run needs no
    // key: it shows what would be done.
    let sink_ip = sink_ip_for_route(settings)?;
    let auth_key = settings.env.secret(greenflow_config::SecretVar::TailscaleAuthKey);
    if !args.dry_run {
        greenflow_cluster::check_route_auth_key(&greenflow_cluster::route(settings, sink_ip)?, auth_key.as_ref())?;
    }
    let plan = InstallPlan::new(settings, sink_ip)?;
    if args.dry_run {
        print!("{}", plan.describe());
        return Ok(exit::OK);
    }

    let cluster = greenflow_cluster::connect(settings).await?;
    // The cluster holds the writer's credential: remote write only, never queries, exports or deletes.
    let password = greenflow_sink::writer_password(settings).context("cannot read the sink's writer password")?;
    let progress = Progress::start(&format!(
        "installing {} (chart kube-prometheus-stack {}) into namespace {} on {}",
        plan.release,
        plan.chart_version,
        plan.namespace,
        cluster.server()
    ));
    let report = cluster.install(&plan, &password, auth_key.as_ref()).await;
    progress.finish();
    let report = report?;
    println!("namespace {}: {}", plan.namespace, report.namespace);
    println!("Secret {}/{}: {}", plan.namespace, plan.secret_name, report.secret);
    if let (Some(name), Some(change)) = (&plan.auth_key_secret, report.auth_key_secret) {
        println!("Secret {}/{name} (Tailscale auth key): {change}", plan.namespace);
    }
    if let Some(route) = &plan.route {
        println!("route: {}", route.describe());
    }
    println!(
        "release {} installed with helm {} on Kubernetes {}; Prometheus stays at 0 replicas until `greenflow run`",
        plan.release, report.helm_version, report.kubernetes_version
    );
    println!("check it with `greenflow cluster status`");
    Ok(exit::OK)
}

async fn uninstall(settings: &Settings, args: &ClusterUninstallArgs) -> anyhow::Result<u8> {
    let plan = InstallPlan::without_values(settings)?;
    let cluster_config = &settings.config.cluster;
    if !args.yes {
        anyhow::bail!(
            "this removes the release {}, the Secret {} and the Lease {} from namespace {} (the namespace stays): add \
             --yes to confirm",
            cluster_config.release,
            cluster_config.remote_write_secret,
            cluster_config.lease_name,
            cluster_config.namespace
        );
    }
    let cluster = greenflow_cluster::connect(settings).await?;
    let report = cluster.uninstall(&plan).await?;
    println!("release {} uninstalled from namespace {}", plan.release, plan.namespace);
    println!(
        "Secret {}: {}; Lease {}: {}",
        cluster_config.remote_write_secret,
        if report.secret_deleted { "deleted" } else { "was not there" },
        cluster_config.lease_name,
        if report.lease_deleted { "deleted" } else { "was not there" },
    );
    Ok(exit::OK)
}

async fn status(settings: &Settings, args: &FormatArgs) -> anyhow::Result<u8> {
    let cluster: KubeCluster = greenflow_cluster::connect(settings).await?;
    let status = cluster.status().await?;
    let queue: Option<Result<QueueMetrics, String>> = status
        .metrics
        .as_ref()
        .map(|m| m.clone().and_then(|text| parse_queue_metrics(&text, REMOTE_NAME).map_err(|e| e.to_string())));
    let lossy = matches!(&queue, Some(Ok(q)) if q.samples_failed > 0.0 || q.samples_dropped > 0.0);
    let installed = matches!(status.release, Ok(Some(_))) && status.prometheus.is_ok();
    let healthy = installed && !lossy;
    // The configured route, and while Prometheus runs, what its pod shows of it.
    let route = sink_ip_for_route(settings)
        .and_then(|ip| Ok(greenflow_cluster::route(settings, ip)?))
        .map_err(|e| format!("{e:#}"));
    let running = matches!(&status.prometheus, Ok(p) if p.replicas > 0);
    let route_check = if running { cluster.diagnose_route().await.ok().flatten() } else { None };
    if args.json {
        let mut value = status_json(&status, &queue, healthy);
        value["route"] = match &route {
            Ok(r) => json!({
                "reach": r.reach.as_str(),
                "chosen_by": r.chosen_by,
                "url": r.url,
                "proxy_url": r.proxy_url,
                "tls_server_name": r.tls_server_name,
                "description": r.describe(),
            }),
            Err(_) => Value::Null,
        };
        value["route_error"] = route.as_ref().err().map_or(Value::Null, |e| json!(e));
        value["route_check"] = route_check.as_ref().map_or(Value::Null, |c| json!(c));
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_status(&status, &queue);
        match &route {
            Ok(r) => println!("route        {}", r.describe()),
            Err(e) => println!("route        unknown: {e}"),
        }
        if let Some(cause) = &route_check {
            println!("route check  {cause}");
        }
    }
    Ok(if healthy { exit::OK } else { exit::UNHEALTHY })
}

fn queue_json(queue: &QueueMetrics) -> Value {
    json!({
        "samples_sent": queue.samples_sent,
        "samples_pending": queue.samples_pending,
        "samples_failed": queue.samples_failed,
        "samples_dropped": queue.samples_dropped,
        "highest_timestamp": queue.highest_timestamp,
        "highest_sent_timestamp": queue.highest_sent_timestamp,
    })
}

fn split<T: serde::Serialize>(part: &Result<T, String>) -> (Value, Value) {
    match part {
        Ok(value) => (serde_json::to_value(value).unwrap_or(Value::Null), Value::Null),
        Err(err) => (Value::Null, Value::String(err.clone())),
    }
}

fn status_json(status: &ClusterStatus, queue: &Option<Result<QueueMetrics, String>>, healthy: bool) -> Value {
    let (release, release_error) = split(&status.release);
    let (prometheus, prometheus_error) = split(&status.prometheus);
    let (lock, lock_error) = split(&status.lock);
    let (remote_write, remote_write_error) = match queue {
        None => (Value::Null, Value::Null),
        Some(Ok(q)) => (queue_json(q), Value::Null),
        Some(Err(e)) => (Value::Null, Value::String(e.clone())),
    };
    json!({
        "healthy": healthy,
        "server": status.server,
        "namespace": status.namespace,
        "kubernetes_version": status.kubernetes_version,
        "release": release,
        "release_error": release_error,
        "prometheus": prometheus,
        "prometheus_error": prometheus_error,
        "remote_write": remote_write,
        "remote_write_error": remote_write_error,
        "lock": lock,
        "lock_error": lock_error,
    })
}

fn print_status(status: &ClusterStatus, queue: &Option<Result<QueueMetrics, String>>) {
    println!(
        "cluster      {} (Kubernetes {}), namespace {}",
        status.server, status.kubernetes_version, status.namespace
    );
    match &status.release {
        Ok(Some(release)) => println!("release      revision {}, {}", release.revision, release.status),
        Ok(None) => println!("release      not installed: run `greenflow cluster install`"),
        Err(err) => println!("release      unknown: {err}"),
    }
    match &status.prometheus {
        Ok(p) => {
            let state = if p.replicas == 0 { " (scaled down: no run)" } else { "" };
            let condition = |c: &Option<greenflow_cluster::Condition>| {
                c.as_ref().map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into())
            };
            println!(
                "prometheus   {} {}: {}/{} replicas available{state}, Available={}, Reconciled={}",
                p.name,
                p.version.as_deref().unwrap_or("(version unknown)"),
                p.available_replicas,
                p.replicas,
                condition(&p.available),
                condition(&p.reconciled)
            );
        }
        Err(err) => println!("prometheus   {err}"),
    }
    match queue {
        None => println!("remote write not running (read while a run has Prometheus up)"),
        Some(Ok(q)) => {
            let behind = q.highest_timestamp - q.highest_sent_timestamp;
            let warning = if q.samples_failed > 0.0 || q.samples_dropped > 0.0 {
                "  SAMPLES LOST: check the password (Secret) and the sink"
            } else {
                ""
            };
            println!(
                "remote write sent {}, pending {}, failed {}, dropped {}, newest sent {:.0}s behind{warning}",
                q.samples_sent, q.samples_pending, q.samples_failed, q.samples_dropped, behind
            );
        }
        Some(Err(err)) => println!("remote write unknown: {err}"),
    }
    match &status.lock {
        Ok(None) => println!("lock         free"),
        Ok(Some(lock)) if lock.holder.is_empty() => println!("lock         free"),
        Ok(Some(lock)) => println!(
            "lock         {} {} since {} (lapses {} by its holder's clock; a run takes it over only after seeing it \
             unrenewed for a lease)",
            if lock.expired { "not renewed lately, held by" } else { "held by" },
            lock.holder,
            lock.since.as_deref().unwrap_or("?"),
            lock.expires.as_deref().unwrap_or("?")
        ),
        Err(err) => println!("lock         unknown: {err}"),
    }
}
