//! Turns settings into a concrete sink: which programs, with which arguments, listening where, with which generated
//! files. Preparing checks everything that can be checked before a process starts.

use std::ffi::OsString;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use greenflow_config::{Reach, Secret, SecretVar, Settings};
use greenflow_render::{
    AuthDirective, CaddyfileInput, DASHBOARD_JSON, GrafanaInput, SiteAlias, render_caddyfile, render_grafana,
};
use serde::{Deserialize, Serialize};

use crate::binaries::Program;
use crate::error::SinkError;
use crate::files::{ensure_dir, load_or_generate_secret, write_private, write_public};
use crate::supervisor::ProcessSpec;
use crate::tailnet::tailnet_addresses;
use crate::versions::{self, Release};
use crate::vm_data;

/// The name of each sink component, as status and logs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentName {
    /// Storage.
    VictoriaMetrics,
    /// Reverse proxy, auth, TLS.
    Caddy,
    /// Views.
    Grafana,
}

impl ComponentName {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VictoriaMetrics => "victoria-metrics",
            Self::Caddy => "caddy",
            Self::Grafana => "grafana",
        }
    }
}

/// The addresses of a sink, as the loopback site serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkUrls {
    /// Where Prometheus remote-writes (`.../vm/api/v1/write`).
    pub remote_write_url: String,
    /// The Prometheus-API base (`.../vm`): queries go to `<query_url>/api/v1/query`.
    pub query_url: String,
    /// Grafana behind Caddy (`.../grafana/`).
    pub grafana_url: String,
}

impl SinkUrls {
    /// The URLs under a base such as `http://127.0.0.1:8080`.
    pub fn under(base: &str) -> Self {
        Self {
            remote_write_url: format!("{base}/vm/api/v1/write"),
            query_url: format!("{base}/vm"),
            grafana_url: format!("{base}/grafana/"),
        }
    }
}

/// One component ready to start.
#[derive(Debug, Clone)]
pub struct Component {
    /// Which one.
    pub name: ComponentName,
    /// Its version, when the binary tells.
    pub version: Option<String>,
    /// Where it listens (`127.0.0.1:PORT`).
    pub listen: String,
    /// How to run it.
    pub spec: ProcessSpec,
}

/// Why Grafana does not run, when it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrafanaAbsence {
    /// `sink.grafana.enabled: false`.
    Disabled,
    /// No binary found.
    NotInstalled,
    /// A binary, but no home directory with `conf/defaults.ini`.
    NoHomepath,
}

/// A sink with every file rendered and every check passed, ready to start.
#[derive(Debug, Clone)]
pub struct PreparedSink {
    /// The components to run, VictoriaMetrics first.
    pub components: Vec<Component>,
    /// Why Grafana is missing, if it is.
    pub grafana_absent: Option<GrafanaAbsence>,
    /// Loopback URLs.
    pub urls: SinkUrls,
    /// Basic-auth user name.
    pub username: String,
    /// The sink password.
    pub password: Secret,
    /// Where logs are written.
    pub logs_dir: PathBuf,
}

/// bcrypt cost of the password hash in the Caddyfile. Caddy checks it once per password and caches the result; the
/// generated password has about 190 bits of entropy, so a higher cost buys nothing but a slower start.
const BCRYPT_COST: u32 = 10;

/// The sink's password: `GREENFLOW_SINK_PASSWORD`, else the generated one in the data directory.
pub fn sink_password(settings: &Settings) -> Result<Secret, SinkError> {
    match settings.env.secret(SecretVar::SinkPassword) {
        Some(secret) => Ok(secret),
        None => load_or_generate_secret(&settings.paths.secrets_dir().join("sink-password")),
    }
}

/// The writer's password: generated on first use and kept in `<data>/secrets/sink-writer-password` (0600).
pub fn writer_password(settings: &Settings) -> Result<Secret, SinkError> {
    load_or_generate_secret(&writer_password_file(settings))
}

/// The file of the writer's password.
pub fn writer_password_file(settings: &Settings) -> PathBuf {
    settings.paths.secrets_dir().join("sink-writer-password")
}

/// The writer's password if it exists already (never creates one).
pub fn existing_writer_password(settings: &Settings) -> Option<Secret> {
    let path = writer_password_file(settings);
    path.is_file().then(|| load_or_generate_secret(&path).ok()).flatten()
}

/// The reader's password (Grafana's credential, the query API only): generated on first use and kept in
/// `<data>/secrets/sink-reader-password` (0600), which Grafana reads through `$__file{}`.
pub fn reader_password(settings: &Settings) -> Result<Secret, SinkError> {
    load_or_generate_secret(&reader_password_file(settings))
}

/// The file of the reader's password.
pub fn reader_password_file(settings: &Settings) -> PathBuf {
    settings.paths.secrets_dir().join("sink-reader-password")
}

/// The key that guards VictoriaMetrics' admin endpoints on its own port (`-deleteAuthKey`, `-snapshotAuthKey`, ...):
/// generated, 0600 in the data directory, known to greenflow only; it reaches VictoriaMetrics through its
/// environment (`-envflag.enable`), never its command line.
pub fn victoria_metrics_admin_key(settings: &Settings) -> Result<Secret, SinkError> {
    load_or_generate_secret(&settings.paths.secrets_dir().join("victoria-metrics-admin-key"))
}

/// The prefix of the environment variables VictoriaMetrics reads its secret flags from.
pub const VM_ENV_FLAG_PREFIX: &str = "GREENFLOW_VM_";

/// The sink's password if one exists already: `GREENFLOW_SINK_PASSWORD`, or the generated file. Never creates one,
/// so that a command that only looks (`sink status`, `sink url`) cannot mint a password the running sink rejects.
pub fn existing_sink_password(settings: &Settings) -> Option<Secret> {
    settings.env.secret(SecretVar::SinkPassword).or_else(|| {
        let path = settings.paths.secrets_dir().join("sink-password");
        path.is_file().then(|| load_or_generate_secret(&path).ok()).flatten()
    })
}

/// The loopback URLs for the configured port.
pub fn loopback_urls(settings: &Settings) -> SinkUrls {
    SinkUrls::under(&format!("http://127.0.0.1:{}", settings.config.sink.http_port))
}

/// The ports the sink binds, with the key that sets each.
fn ports(settings: &Settings, with_grafana: bool) -> Vec<(u16, &'static str)> {
    let sink = &settings.config.sink;
    let mut ports =
        vec![(sink.victoria_metrics.port, "sink.victoria_metrics.port"), (sink.http_port, "sink.http_port")];
    if with_grafana {
        ports.push((sink.grafana.port, "sink.grafana.port"));
    }
    if settings.config.cluster.funnel() {
        ports.push((sink.funnel_port, "sink.funnel_port"));
    }
    ports
}

/// Fails if a port is taken on 127.0.0.1.
pub fn check_port_free(port: u16, key: &'static str) -> Result<(), SinkError> {
    TcpListener::bind(("127.0.0.1", port)).map(drop).map_err(|_| SinkError::PortInUse { port, key })
}

/// Finds the binaries, checks the ports, loads or generates the secrets, and writes the generated configuration into
/// the state directory. Starts nothing.
pub fn prepare(settings: &Settings) -> Result<PreparedSink, SinkError> {
    let config = &settings.config;
    let sink = &config.sink;
    let Preflight { vm_binary, vm_release, caddy_binary, caddy_release, grafana, public_bind } = preflight(settings)?;

    let state = settings.paths.sink_state_dir();
    let logs_dir = state.join("logs");
    ensure_dir(&logs_dir)?;
    let password = sink_password(settings)?;
    let urls = loopback_urls(settings);

    let vm_data = settings.paths.victoria_metrics_data();
    ensure_dir(&vm_data)?;
    vm_data::record_data_writer(&vm_data, &vm_binary, &vm_release)?;
    let admin_key = victoria_metrics_admin_key(settings)?;
    let vm_env = versions::victoria_metrics_admin_key_flags(&vm_release)
        .iter()
        .map(|flag| {
            let name = format!("{VM_ENV_FLAG_PREFIX}{}", flag.trim_start_matches('-').replace('.', "_"));
            (OsString::from(name), OsString::from(admin_key.expose()))
        })
        .collect();
    let vm = Component {
        name: ComponentName::VictoriaMetrics,
        version: known(&vm_release),
        listen: format!("127.0.0.1:{}", sink.victoria_metrics.port),
        spec: ProcessSpec {
            name: ComponentName::VictoriaMetrics.as_str().into(),
            args: victoria_metrics_args(settings, &vm_data),
            program: vm_binary,
            env: vm_env,
            log_file: logs_dir.join("victoria-metrics.log"),
            stop_grace: Duration::from_secs(20),
        },
    };

    let auth_directive = versions::caddy_auth_directive(&caddy_release);
    let password_hash = bcrypt::hash(password.expose(), BCRYPT_COST).map_err(SinkError::Hash)?;
    let writer_hash = bcrypt::hash(writer_password(settings)?.expose(), BCRYPT_COST).map_err(SinkError::Hash)?;
    let reader_hash = bcrypt::hash(reader_password(settings)?.expose(), BCRYPT_COST).map_err(SinkError::Hash)?;
    let caddy_dir = state.join("caddy");
    ensure_private_dir(&caddy_admin_dir(settings))?;
    let caddyfile = caddyfile(
        settings,
        PasswordHashes { owner: password_hash, writer: writer_hash, reader: reader_hash },
        auth_directive,
        grafana.is_ok(),
        &public_bind,
    )?;
    let caddyfile_path = caddy_dir.join("Caddyfile");
    write_private(&caddyfile_path, &caddyfile)?;
    let caddy = Component {
        name: ComponentName::Caddy,
        version: known(&caddy_release),
        listen: format!("127.0.0.1:{}", sink.http_port),
        spec: ProcessSpec {
            name: ComponentName::Caddy.as_str().into(),
            program: caddy_binary,
            args: ["run", "--config"]
                .map(OsString::from)
                .into_iter()
                .chain([caddyfile_path.into_os_string()])
                .chain(["--adapter", "caddyfile"].map(OsString::from))
                .collect(),
            // Caddy keeps certificates and its autosaved config under XDG directories: keep them in greenflow's.
            env: vec![
                ("XDG_DATA_HOME".into(), caddy_dir.join("data").into_os_string()),
                ("XDG_CONFIG_HOME".into(), caddy_dir.join("config").into_os_string()),
                // Caddy's PKI library keeps `~/.step` otherwise.
                ("STEPPATH".into(), caddy_dir.join("step").into_os_string()),
            ],
            log_file: logs_dir.join("caddy.log"),
            stop_grace: Duration::from_secs(10),
        },
    };

    let mut components = vec![vm, caddy];
    let grafana_absent = match grafana {
        Ok(install) => {
            components.push(prepare_grafana(settings, install, &state, &logs_dir)?);
            None
        }
        Err(absence) => Some(absence),
    };
    Ok(PreparedSink { components, grafana_absent, urls, username: sink.username.clone(), password, logs_dir })
}

/// A release as status shows it; `None` when nothing is known.
pub(crate) fn known(release: &Release) -> Option<String> {
    (*release != Release::Unknown).then(|| release.describe())
}

/// The bcrypt hashes of the two credentials, as the Caddyfile carries them.
pub(crate) struct PasswordHashes {
    /// The owner's (`sink.username`).
    pub owner: String,
    /// The writer's (`<sink.username>-writer`).
    pub writer: String,
    /// The reader's (`<sink.username>-reader`).
    pub reader: String,
}

/// The directory (mode 0700) of Caddy's admin socket.
pub(crate) fn caddy_admin_dir(settings: &Settings) -> PathBuf {
    settings.paths.sink_state_dir().join("caddy-admin")
}

/// Fails when `dir` (set by `key`) cannot be created because something on its way is not a directory.
pub fn check_writable_dir(dir: &Path, key: &'static str) -> Result<(), SinkError> {
    match dir.ancestors().find(|a| a.symlink_metadata().is_ok()) {
        Some(existing) if !existing.is_dir() => {
            Err(SinkError::NotADirectory { key, path: dir.to_owned(), blocker: existing.to_owned() })
        }
        _ => Ok(()),
    }
}

/// Creates a directory that only its owner may enter.
fn ensure_private_dir(path: &Path) -> Result<(), SinkError> {
    use std::os::unix::fs::PermissionsExt;
    ensure_dir(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(SinkError::io("set permissions of", path))
}

/// The sink's Caddyfile for these settings: the one site layout that `sink up` and `sink render` share.
pub(crate) fn caddyfile(
    settings: &Settings,
    hashes: PasswordHashes,
    auth_directive: AuthDirective,
    with_grafana: bool,
    public_bind: &[IpAddr],
) -> Result<String, SinkError> {
    let sink = &settings.config.sink;
    let public = settings.public_address()?;
    let reach = settings.config.cluster.reach;
    // With Funnel, tailscaled serves the public name (on the tailnet too) and forwards to the write-only site.
    let funnel = settings.config.cluster.funnel();
    let public_aliases = match (&public, reach) {
        (Some(public), Some(Reach::Operator)) => vec![SiteAlias {
            address: format!(
                "https://{}{}",
                settings.config.cluster.egress_service_host(),
                public.port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            why: "cluster.reach: operator, the egress Service".into(),
        }],
        _ => Vec::new(),
    };
    Ok(render_caddyfile(&CaddyfileInput {
        admin_listen: format!("unix/{}", caddy_admin_dir(settings).join("admin.sock").display()),
        loopback_port: sink.http_port,
        public_site: public.as_ref().filter(|_| !funnel).map(|p| p.base_url()),
        public_bind: public_bind.to_vec(),
        username: sink.username.clone(),
        password_hash: hashes.owner,
        writer_username: sink.writer_username(),
        writer_password_hash: hashes.writer,
        reader_username: sink.reader_username(),
        reader_password_hash: hashes.reader,
        victoria_metrics: format!("127.0.0.1:{}", sink.victoria_metrics.port),
        grafana: with_grafana.then(|| format!("127.0.0.1:{}", sink.grafana.port)),
        auth_directive,
        public_aliases,
        funnel_port: funnel.then_some(sink.funnel_port),
    })?)
}

/// Where Grafana's generated files go, and which secret files its configuration points at.
#[derive(Debug, Clone)]
pub(crate) struct GrafanaLayout {
    /// `grafana.ini`, `provisioning/` and `dashboards/` are written below this directory.
    pub dir: PathBuf,
    /// Grafana's log directory.
    pub logs_dir: PathBuf,
    /// File read through `$__file{}` for the admin password.
    pub admin_password_file: PathBuf,
    /// File read through `$__file{}` for `secret_key`.
    pub secret_key_file: PathBuf,
    /// File read through `$__file{}` for the datasource's password (the reader's).
    pub datasource_password_file: PathBuf,
}

/// Renders and writes `grafana.ini`, the provisioning files and the dashboard below `layout.dir`; returns the path
/// of `grafana.ini`. Shared by `sink up` and `sink render`.
pub(crate) fn write_grafana_files(settings: &Settings, layout: &GrafanaLayout) -> Result<PathBuf, SinkError> {
    let config = &settings.config;
    let provisioning = layout.dir.join("provisioning");
    let dashboards_dir = layout.dir.join("dashboards");
    let public = settings.public_address()?;
    let loopback_base = format!("http://127.0.0.1:{}", config.sink.http_port);
    let base = public.as_ref().map(|p| p.base_url()).unwrap_or(loopback_base);
    let files = render_grafana(&GrafanaInput {
        port: config.sink.grafana.port,
        domain: base.split("://").nth(1).unwrap_or("127.0.0.1").split(':').next().unwrap_or("127.0.0.1").to_owned(),
        root_url: format!("{base}/grafana/"),
        data_dir: settings.paths.grafana_data(),
        logs_dir: layout.logs_dir.clone(),
        provisioning_dir: provisioning.clone(),
        dashboards_dir: dashboards_dir.clone(),
        admin_user: config.sink.grafana.admin_user.clone(),
        admin_password_file: layout.admin_password_file.clone(),
        secret_key_file: layout.secret_key_file.clone(),
        // Through Caddy's loopback site as the reader: Grafana can query, and nothing else.
        datasource_url: format!("http://127.0.0.1:{}/vm", config.sink.http_port),
        datasource_user: config.sink.reader_username(),
        datasource_password_file: layout.datasource_password_file.clone(),
        scrape_interval: config.local.scrape_interval,
    })?;
    let ini_path = layout.dir.join("grafana.ini");
    write_public(&ini_path, &files.ini)?;
    write_public(&provisioning.join("datasources/greenflow.yaml"), &files.datasources)?;
    write_public(&provisioning.join("dashboards/greenflow.yaml"), &files.dashboards)?;
    for sub in ["plugins", "alerting", "notifiers"] {
        ensure_dir(&provisioning.join(sub))?;
    }
    write_public(&dashboards_dir.join("greenflow-experiment.json"), DASHBOARD_JSON)?;
    Ok(ini_path)
}

/// What [`preflight`] found.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// VictoriaMetrics' binary.
    pub vm_binary: PathBuf,
    /// Its release.
    pub vm_release: Release,
    /// Caddy's binary.
    pub caddy_binary: PathBuf,
    /// Its release.
    pub caddy_release: Release,
    /// Grafana's binary and home, or why it will not run.
    pub grafana: Result<GrafanaInstall, GrafanaAbsence>,
    /// What the public site binds: this machine's tailnet addresses for a tailnet name, else nothing (every
    /// interface).
    pub public_bind: Vec<IpAddr>,
}

/// An installed Grafana.
#[derive(Debug, Clone)]
pub struct GrafanaInstall {
    /// `grafana` or `grafana-server`.
    pub binary: PathBuf,
    /// The directory holding `conf/defaults.ini`.
    pub homepath: PathBuf,
}

/// The checks that need no writing: the binaries exist in supported releases, VictoriaMetrics can read its data
/// directory, and the ports are free. Every problem is reported, not just the first ([`SinkError::Several`]).
pub fn preflight(settings: &Settings) -> Result<Preflight, SinkError> {
    let sink = &settings.config.sink;
    let mut problems = Vec::new();
    let vm =
        Program::VictoriaMetrics.locate(sink.victoria_metrics.binary.as_deref(), &settings.env).and_then(|binary| {
            let release = versions::detect_supported(Program::VictoriaMetrics, &binary)?;
            vm_data::check_data_writer(&settings.paths.victoria_metrics_data(), &binary, &release)?;
            Ok((binary, release))
        });
    let caddy = Program::Caddy.locate(sink.caddy.binary.as_deref(), &settings.env).and_then(|binary| {
        let release = versions::detect_supported(Program::Caddy, &binary)?;
        Ok((binary, release))
    });
    let grafana = locate_grafana(settings);
    let public_bind = settings.public_address().map_err(SinkError::from).and_then(|public| match public {
        Some(public) if public.is_tailnet() => {
            tailnet_addresses(&public.host, settings.env.get("PATH").unwrap_or_default())
        }
        _ => Ok(Vec::new()),
    });
    let grafana_runs = matches!(grafana, Ok(Ok(_)));
    for (port, key) in ports(settings, grafana_runs) {
        problems.extend(check_port_free(port, key).err());
    }
    problems.extend(check_writable_dir(&settings.paths.data_dir, "paths.data_dir").err());
    problems.extend(check_writable_dir(&settings.paths.state_dir, "paths.state_dir").err());
    let (vm, caddy, grafana, public_bind) = match (vm, caddy, grafana, public_bind) {
        (Ok(vm), Ok(caddy), Ok(grafana), Ok(public_bind)) => (vm, caddy, grafana, public_bind),
        (vm, caddy, grafana, public_bind) => {
            // In the order of the checks: the programs first. At least one of the four failed.
            let mut all: Vec<SinkError> =
                [vm.err(), caddy.err(), grafana.err(), public_bind.err()].into_iter().flatten().collect();
            all.append(&mut problems);
            return Err(if all.len() == 1 { all.remove(0) } else { SinkError::Several { errors: all } });
        }
    };
    // The Caddyfile is rendered once here with stand-in hashes, so that what it cannot carry (a user name) is refused
    // before anything is written or started.
    let stand_in = "$2b$10$abcdefghijklmnopqrstuuJ0DHbwjfF3hOZ0FbV9hqfPZyS8pX.R2".to_owned();
    problems.extend(
        caddyfile(
            settings,
            PasswordHashes { owner: stand_in.clone(), writer: stand_in.clone(), reader: stand_in },
            versions::caddy_auth_directive(&caddy.1),
            grafana.is_ok(),
            &public_bind,
        )
        .err(),
    );
    SinkError::all(problems)?;
    let ((vm_binary, vm_release), (caddy_binary, caddy_release)) = (vm, caddy);
    Ok(Preflight { vm_binary, vm_release, caddy_binary, caddy_release, grafana, public_bind })
}

fn victoria_metrics_args(settings: &Settings, data: &Path) -> Vec<OsString> {
    let vm = &settings.config.sink.victoria_metrics;
    let mut args: Vec<OsString> = vec![
        // The admin keys come from the environment (GREENFLOW_VM_*), so no other local user sees them.
        "-envflag.enable".into(),
        format!("-envflag.prefix={VM_ENV_FLAG_PREFIX}").into(),
        format!("-httpListenAddr=127.0.0.1:{}", vm.port).into(),
        format!("-storageDataPath={}", data.display()).into(),
        format!("-retentionPeriod={}", settings.config.sink.retention.as_flag_value()).into(),
        format!("-search.latencyOffset={}ms", vm.search_latency_offset.as_millis()).into(),
        // A sample given twice (a re-sent batch, an archive imported onto part of itself) is kept once: one per
        // series and millisecond, which is what Prometheus' timestamps can tell apart anyway. extra_args, later on
        // the line, can set a coarser interval.
        "-dedup.minScrapeInterval=1ms".into(),
    ];
    args.extend(vm.extra_args.iter().map(OsString::from));
    args
}

/// Finds Grafana and its home directory; a missing Grafana is not an error, a misconfigured path is.
fn locate_grafana(settings: &Settings) -> Result<Result<GrafanaInstall, GrafanaAbsence>, SinkError> {
    let grafana = &settings.config.sink.grafana;
    if !grafana.enabled {
        return Ok(Err(GrafanaAbsence::Disabled));
    }
    let binary = match Program::Grafana.locate(grafana.binary.as_deref(), &settings.env) {
        Ok(binary) => binary,
        Err(SinkError::BinaryNotFound { .. }) => return Ok(Err(GrafanaAbsence::NotInstalled)),
        Err(err) => return Err(err),
    };
    let homepath = match &grafana.homepath {
        Some(home) => Some(home.clone()),
        None => guess_grafana_homepath(&binary),
    };
    match homepath {
        Some(homepath) if homepath.join("conf/defaults.ini").is_file() => Ok(Ok(GrafanaInstall { binary, homepath })),
        _ => {
            tracing::warn!(binary = %binary.display(), "Grafana's home (with conf/defaults.ini) not found; set sink.grafana.homepath");
            Ok(Err(GrafanaAbsence::NoHomepath))
        }
    }
}

/// Grafana's home next to its binary: `<prefix>/share/grafana` (nixpkgs) or `<home>/bin/grafana` (Debian, tarball).
fn guess_grafana_homepath(binary: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_owned());
    let bin_dir = real.parent()?;
    let prefix = bin_dir.parent()?;
    [prefix.join("share/grafana"), prefix.to_owned(), PathBuf::from("/usr/share/grafana")]
        .into_iter()
        .find(|home| home.join("conf/defaults.ini").is_file())
}

fn prepare_grafana(
    settings: &Settings,
    install: GrafanaInstall,
    state: &Path,
    logs_dir: &Path,
) -> Result<Component, SinkError> {
    let config = &settings.config;
    let grafana_state = state.join("grafana");
    let secrets = settings.paths.secrets_dir();
    let admin_password_file = match settings.env.secret(SecretVar::GrafanaAdminPassword) {
        Some(secret) => {
            let path = grafana_state.join("admin-password");
            write_private(&path, secret.expose())?;
            path
        }
        None => {
            let path = secrets.join("grafana-admin-password");
            load_or_generate_secret(&path)?;
            path
        }
    };
    let secret_key_file = secrets.join("grafana-secret-key");
    load_or_generate_secret(&secret_key_file)?;
    reader_password(settings)?;
    let ini_path = write_grafana_files(
        settings,
        &GrafanaLayout {
            dir: grafana_state,
            logs_dir: logs_dir.to_owned(),
            admin_password_file,
            secret_key_file,
            datasource_password_file: reader_password_file(settings),
        },
    )?;
    ensure_dir(&settings.paths.grafana_data())?;

    let GrafanaInstall { binary, homepath } = install;
    let legacy = binary.file_name().is_some_and(|n| n == "grafana-server");
    let mut args: Vec<OsString> = if legacy { Vec::new() } else { vec!["server".into()] };
    args.extend(["--homepath".into(), homepath.as_os_str().to_owned(), "--config".into(), ini_path.into_os_string()]);
    Ok(Component {
        name: ComponentName::Grafana,
        version: known(&versions::detect(Program::Grafana, &binary)),
        listen: format!("127.0.0.1:{}", config.sink.grafana.port),
        spec: ProcessSpec {
            name: ComponentName::Grafana.as_str().into(),
            program: binary,
            args,
            env: Vec::new(),
            log_file: logs_dir.join("grafana.log"),
            stop_grace: Duration::from_secs(10),
        },
    })
}
