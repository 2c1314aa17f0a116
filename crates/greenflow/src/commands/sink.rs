//! `greenflow sink up | down | status | url`.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use greenflow_config::Settings;
use greenflow_sink::{
    ComponentName, GrafanaAbsence, RunningSink, SinkError, SinkPresence, SinkStatus, SinkUrls, StopOutcome,
    check_health, ensure_dir, existing_sink_password, loopback_urls, preflight, read_state, running_supervisor,
    sink_password, sink_presence, sink_status, stop_running,
};
use serde_json::json;

use crate::cli::{FormatArgs, SinkUpArgs, SinkUrlArgs};
use crate::exit;
use crate::signals::StopRequests;
use crate::ui::{Progress, human_bytes, human_duration};

/// `sink up`: in the foreground until Ctrl-C or SIGTERM, or detached.
pub async fn up(settings: &Settings, args: &SinkUpArgs, config_flag: Option<&Path>) -> anyhow::Result<u8> {
    if !args.detached_child && sink_presence(settings).await == SinkPresence::Unsupervised {
        eprintln!(
            "a sink already answers on 127.0.0.1:{} (not started by greenflow: a service manager's, e.g. the NixOS or \
             home-manager module); not starting a second one. `greenflow sink status` shows it",
            settings.config.sink.http_port
        );
        return Ok(exit::OK);
    }
    if args.detach && !args.detached_child {
        return detach(settings, args, config_flag).await;
    }
    let mut stop = StopRequests::install(args.detached_child)?;
    let started = Instant::now();
    let sink = match start_sink(settings, args.detached_child).await? {
        Some(sink) => sink,
        None => return Ok(exit::OK),
    };
    let healthy = tokio::select! {
        result = wait_healthy(&sink, args.timeout) => result,
        _ = stop.wait(1) => Err(anyhow!("interrupted while starting")),
    };
    if let Err(err) = healthy {
        sink.stop().await;
        return Err(err);
    }
    eprintln!("sink is up in {}", human_duration(started.elapsed()));
    print_urls(&sink.prepared().urls, &sink.prepared().username, sink.prepared().grafana_absent.as_ref());
    if !args.detached_child {
        eprintln!("Ctrl-C stops the sink.");
    }
    stop.wait(1).await;
    eprintln!("stopping the sink ...");
    sink.stop().await;
    eprintln!("sink stopped; data kept in {}", settings.paths.data_dir.display());
    Ok(exit::OK)
}

/// Starts the sink in this process; `None` (after saying so) when one already runs.
pub async fn start_sink(settings: &Settings, detached: bool) -> anyhow::Result<Option<RunningSink>> {
    match RunningSink::start(settings, detached).await {
        Ok(sink) => {
            let summary: Vec<String> = sink
                .prepared()
                .components
                .iter()
                .map(|c| format!("{} {}", c.name.as_str(), c.version.as_deref().unwrap_or("(version unknown)")))
                .collect();
            eprintln!("starting {}", summary.join(", "));
            if sink.prepared().grafana_absent == Some(GrafanaAbsence::NotInstalled) {
                eprintln!("Grafana is not installed: the sink runs without dashboards (nixpkgs `grafana` adds them)");
            }
            Ok(Some(sink))
        }
        Err(SinkError::AlreadyRunning { pid }) => {
            eprintln!("the sink is already running (pid {pid}); `greenflow sink status` shows it");
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// Waits for every component's health check, with a spinner.
pub async fn wait_healthy(sink: &RunningSink, timeout: Duration) -> anyhow::Result<()> {
    let mut progress = Progress::start("waiting for the sink to answer");
    let result = sink
        .wait_healthy(timeout, |waiting| {
            let names: Vec<&str> = waiting.iter().map(|n| n.as_str()).collect();
            progress.set(&format!("waiting for {}", names.join(", ")));
        })
        .await;
    progress.finish();
    Ok(result?)
}

fn print_urls(urls: &SinkUrls, username: &str, grafana_absent: Option<&GrafanaAbsence>) {
    println!("remote write:  {}", urls.remote_write_url);
    println!("query API:     {}", urls.query_url);
    match grafana_absent {
        None => println!("Grafana:       {}", urls.grafana_url),
        Some(_) => println!("Grafana:       not running (`greenflow sink status` says why)"),
    }
    println!("user:          {username} (`greenflow sink url --show-password` prints the password)");
}

/// Starts a background supervisor and returns once the sink is healthy.
async fn detach(settings: &Settings, args: &SinkUpArgs, config_flag: Option<&Path>) -> anyhow::Result<u8> {
    if let Some(pid) = running_supervisor(settings) {
        eprintln!("the sink is already running (pid {pid}); `greenflow sink status` shows it");
        return Ok(exit::OK);
    }
    // Fail here, in the user's terminal, on what can be checked before anything starts.
    preflight(settings)?;
    let logs = settings.paths.sink_state_dir().join("logs");
    ensure_dir(&logs)?;
    let log_path = logs.join("supervisor.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open `{}`", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the greenflow executable")?;
    let mut command = std::process::Command::new(exe);
    if let Some(config) = config_flag.or(settings.config_file.as_deref()) {
        let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
        command.arg("--config").arg(absolute);
    }
    command
        .args(["sink", "up", "--detached-child", "--timeout"])
        .arg(format!("{}s", args.timeout.as_secs()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("cannot start the background sink")?;

    let mut progress = Progress::start("starting the sink in the background");
    let deadline = Instant::now() + args.timeout + Duration::from_secs(10);
    let mut last_problem = String::from("it did not publish its state");
    let outcome = loop {
        if let Some(status) = child.try_wait()? {
            break Err(anyhow!(
                "the background sink exited ({status}) before it was healthy:\n{}",
                greenflow_sink::tail_lines(&log_path, 15)
            ));
        }
        if let Some(state) = read_state(settings) {
            let password = sink_password(settings)?;
            let health = check_health(&state, &settings.config.sink.username, Some(&password)).await;
            // Up once the background supervisor itself saw every component healthy (and so restarts a crash).
            if health.is_ok() && state.ready {
                break Ok(state);
            }
            let waiting: Vec<&str> = health.waiting().iter().map(|n| n.as_str()).collect();
            progress.set(&format!("waiting for {}", waiting.join(", ")));
            last_problem = health.problems();
        }
        if Instant::now() >= deadline {
            let _ = stop_running(settings, Duration::from_secs(20)).await;
            break Err(anyhow!(
                "the sink did not become healthy in time ({last_problem}); its log `{}` ends with:\n{}",
                log_path.display(),
                greenflow_sink::tail_lines(&log_path, 15)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish();
    let state = outcome?;
    eprintln!("sink is up in the background (pid {}); logs in {}", state.supervisor_pid, logs.display());
    print_urls(&state.urls, &settings.config.sink.username, state.grafana_absent.as_ref());
    eprintln!("`greenflow sink down` stops it.");
    Ok(exit::OK)
}

/// `sink down`.
pub async fn down(settings: &Settings) -> anyhow::Result<u8> {
    let progress = Progress::start("stopping the sink");
    let outcome = stop_running(settings, Duration::from_secs(40)).await?;
    progress.finish();
    match outcome {
        StopOutcome::NotRunning => eprintln!("the sink is not running"),
        StopOutcome::Stopped => eprintln!("sink stopped; data kept in {}", settings.paths.data_dir.display()),
        StopOutcome::Killed => eprintln!("the sink did not stop in time and was killed"),
    }
    Ok(exit::OK)
}

/// `sink status`.
pub async fn status(settings: &Settings, args: &FormatArgs) -> anyhow::Result<u8> {
    let status = sink_status(settings).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(if status.is_ok() { exit::OK } else { exit::UNHEALTHY })
}

fn print_status(status: &SinkStatus) {
    match (status.running, status.supervisor_pid) {
        (true, None) => println!(
            "sink: running, not supervised by greenflow (a service manager's, e.g. the NixOS or home-manager module)"
        ),
        (true, Some(pid)) => println!(
            "sink: running (pid {pid}{}, since {})",
            if status.detached == Some(true) { ", detached" } else { "" },
            status.started_at.as_deref().unwrap_or("?")
        ),
        _ => println!("sink: not running (`greenflow sink up` starts it)"),
    }
    println!("{:<17} {:<14} {:>7}  {:<10} {:<16} HEALTH", "COMPONENT", "STATE", "PID", "VERSION", "LISTEN");
    for c in &status.components {
        let state = match (c.installed, c.running) {
            (false, _) => "not installed",
            (true, true) => "running",
            (true, false) if c.detail.is_some() && status.running => "not running",
            (true, false) => "stopped",
        };
        let health = match c.healthy {
            Some(true) => "healthy".to_owned(),
            Some(false) => format!("UNHEALTHY: {}", c.detail.as_deref().unwrap_or("?")),
            None => c.detail.clone().unwrap_or_else(|| "-".into()),
        };
        println!(
            "{:<17} {:<14} {:>7}  {:<10} {:<16} {}{}",
            c.name.as_str(),
            state,
            c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            c.version.as_deref().unwrap_or("?"),
            c.listen,
            health,
            if c.restarts > 0 { format!(" ({} restarts)", c.restarts) } else { String::new() },
        );
    }
    println!(
        "data: {} ({}, retention {})",
        status.data_dir.display(),
        human_bytes(status.data_size_bytes),
        status.retention
    );
}

/// `sink url`.
pub fn url(settings: &Settings, args: &SinkUrlArgs) -> anyhow::Result<u8> {
    let urls = if args.public {
        let public = settings.public_address()?.ok_or_else(|| {
            anyhow!(
                "no public address configured: set sink.public_host in greenflow.yaml (e.g. laptop.tail1234.ts.net), \
                 or NODENAME and TAILSCALE_DOMAIN"
            )
        })?;
        SinkUrls { remote_write_url: public.remote_write_url.clone(), ..SinkUrls::under(&public.base_url()) }
    } else {
        loopback_urls(settings)
    };
    let username = &settings.config.sink.username;
    let password = match args.show_password {
        true => Some(existing_sink_password(settings).ok_or_else(|| {
            anyhow!(
                "no sink password here yet: set GREENFLOW_SINK_PASSWORD to the running sink's, or start the sink \
                 (`greenflow sink up`), which generates one"
            )
        })?),
        false => None,
    };
    let writer = settings.config.sink.writer_username();
    // The writer's password exists once the sink has started; it is only ever read here.
    let writer_password = if args.show_password { greenflow_sink::existing_writer_password(settings) } else { None };
    let grafana_running =
        read_state(settings).is_some_and(|s| s.components.iter().any(|c| c.name == ComponentName::Grafana));
    if args.json {
        let mut value = json!({
            "remote_write_url": urls.remote_write_url,
            "query_url": urls.query_url,
            "username": username,
            "writer_username": writer,
            "grafana_url": urls.grafana_url,
        });
        if let Some(password) = &password {
            value["password"] = json!(password.expose());
        }
        if let Some(password) = &writer_password {
            value["writer_password"] = json!(password.expose());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(exit::OK);
    }
    println!("remote write:  {}", urls.remote_write_url);
    println!("query API:     {}", urls.query_url);
    println!("Grafana:       {}{}", urls.grafana_url, if grafana_running { "" } else { " (not running now)" });
    println!("user:          {username} (owner: write, query, export, import)");
    match &password {
        Some(password) => println!("password:      {}", password.expose()),
        None => println!("password:      (hidden; add --show-password)"),
    }
    println!("writer:        {writer} (remote write only: what the cluster holds)");
    match (&writer_password, args.show_password) {
        (Some(password), _) => println!("writer password: {}", password.expose()),
        (None, true) => println!("writer password: (none yet: `greenflow sink up` generates it)"),
        (None, false) => println!("writer password: (hidden; add --show-password)"),
    }
    if args.public && settings.public_address()?.is_some_and(|p| p.scheme == "http") {
        eprintln!("warning: the public address is plain http: the password crosses the network unencrypted");
    }
    Ok(exit::OK)
}
