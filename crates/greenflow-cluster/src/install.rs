//! `greenflow cluster install` and `uninstall`: the namespace, the remote-write Secret (through kube-rs, so the
//! password never reaches helm or a values file), and the pinned kube-prometheus-stack chart through helm.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use greenflow_config::{Secret, Settings};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use serde::Serialize;

use crate::error::{ClusterError, api_code};
use crate::kube_cluster::KubeCluster;

/// The chart's name in its repository.
pub const CHART_NAME: &str = "kube-prometheus-stack";

/// Where helm takes the chart from (`cluster.chart_repository`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// A Helm repository URL (`--repo URL kube-prometheus-stack --version V`).
    Repository(String),
    /// An OCI registry URL (`oci://.../kube-prometheus-stack --version V`).
    Oci(String),
    /// A chart archive saved by `helm pull` (`kube-prometheus-stack-<version>.tgz` in the configured directory).
    Archive(PathBuf),
}

impl ChartSource {
    /// The source `cluster.chart_repository` names (a directory: the pinned version's archive in it).
    pub fn from_settings(settings: &Settings) -> Self {
        let cluster = &settings.config.cluster;
        let repository = cluster.chart_repository.as_str();
        if repository.starts_with("https://") || repository.starts_with("http://") {
            return Self::Repository(repository.to_owned());
        }
        if repository.starts_with("oci://") {
            return Self::Oci(format!("{}/{CHART_NAME}", repository.trim_end_matches('/')));
        }
        let dir = PathBuf::from(repository);
        let dir = if dir.is_relative() { settings.project_dir.join(dir) } else { dir };
        Self::Archive(dir.join(format!("{CHART_NAME}-{}.tgz", cluster.chart_version)))
    }

    /// Fails with [`ClusterError::ChartMissing`] when the source is an archive that is not there (a repository is
    /// helm's to reach).
    pub fn check(&self, version: &str) -> Result<(), ClusterError> {
        match self {
            Self::Archive(archive) if !archive.is_file() => Err(ClusterError::ChartMissing {
                archive: archive.clone(),
                version: version.to_owned(),
                dir: archive.parent().map(Path::to_path_buf).unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }

    /// The chart reference and the flags that select it, for `helm upgrade --install`.
    fn helm_args(&self, version: &str) -> Vec<String> {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            Self::Repository(url) => owned(&[CHART_NAME, "--repo", url, "--version", version]),
            Self::Oci(reference) => owned(&[reference, "--version", version]),
            Self::Archive(path) => vec![path.display().to_string()],
        }
    }
}

/// The helm program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helm {
    /// Its path.
    pub path: PathBuf,
}

impl Helm {
    /// Finds helm: `cluster.helm_binary` when set (it must be a file), else `helm` on the settings' PATH.
    pub fn locate(settings: &Settings) -> Result<Self, ClusterError> {
        let configured = settings.config.cluster.helm_binary.clone();
        if let Some(path) = configured {
            let path = if path.is_relative() { settings.project_dir.join(path) } else { path };
            return if path.is_file() {
                Ok(Self { path })
            } else {
                Err(ClusterError::HelmMissing { configured: Some(path) })
            };
        }
        let search = settings.env.get("PATH").unwrap_or_default();
        std::env::split_paths(search)
            .map(|dir| dir.join("helm"))
            .find(|candidate| is_executable(candidate))
            .map(|path| Self { path })
            .ok_or(ClusterError::HelmMissing { configured: None })
    }

    /// `helm version`, e.g. `v3.18.4` or `v4.1.4`.
    pub fn version(&self) -> Result<String, ClusterError> {
        let output = self.run(&["version".into(), "--template".into(), "{{.Version}}".into()])?;
        Ok(output.trim().to_owned())
    }

    /// [`Helm::version`], refused ([`ClusterError::HelmVersion`]) unless it is Helm 3 or 4: the flags and the
    /// upgrade semantics greenflow relies on are those two majors'.
    pub fn supported_version(&self) -> Result<String, ClusterError> {
        let version = self.version()?;
        let major = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(3 | 4) => Ok(version),
            _ => Err(ClusterError::HelmVersion { found: version, path: self.path.clone() }),
        }
    }

    /// Runs helm with `args`; its stdout on success, [`ClusterError::Helm`] with its stderr on failure.
    pub fn run(&self, args: &[String]) -> Result<String, ClusterError> {
        let command = self.command_line(args);
        tracing::debug!(%command, "running helm");
        let output = duct::cmd(&self.path, args)
            .full_env(helm_env(std::env::vars_os()))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|source| ClusterError::Io { action: format!("run `{command}`"), source })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let stderr = last[last.len().saturating_sub(3)..].join(" / ");
        Err(ClusterError::Helm {
            command,
            stderr: if stderr.is_empty() { format!("exit status {}", output.status) } else { stderr },
        })
    }

    /// The command line as a shell would show it (arguments quoted when needed).
    pub fn command_line(&self, args: &[String]) -> String {
        std::iter::once(self.path.display().to_string())
            .chain(args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c)) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Everything `cluster install` will do, decided before anything is changed.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// helm.
    pub helm: Helm,
    /// The namespace.
    pub namespace: String,
    /// The release name.
    pub release: String,
    /// The pinned chart version.
    pub chart_version: String,
    /// Where the chart comes from.
    pub chart: ChartSource,
    /// The remote-write Secret's name.
    pub secret_name: String,
    /// The remote-write user name (stored in the Secret): the sink's writer, which may only remote-write.
    pub username: String,
    /// The rendered chart values (no secret in them).
    pub values: String,
    /// The kubeconfig context, passed to helm.
    pub kube_context: Option<String>,
    /// The route to the sink.
    pub route: Option<crate::Route>,
    /// The Secret for the Tailscale sidecar's auth key (key `TS_AUTHKEY`), when the route has a sidecar.
    pub auth_key_secret: Option<String>,
    /// The auth-key Secret's configured name, which `uninstall` removes whatever the route.
    pub auth_key_secret_name: String,
}

impl InstallPlan {
    /// Finds helm and the chart and renders the values (`sink_ip`: see [`crate::route`]); fails before anything is
    /// changed.
    pub fn new(settings: &Settings, sink_ip: Option<std::net::IpAddr>) -> Result<Self, ClusterError> {
        let mut plan = Self::without_values(settings)?;
        plan.chart.check(&plan.chart_version)?;
        let route = crate::route(settings, sink_ip)?;
        plan.auth_key_secret = route.sidecar.as_ref().map(|s| s.auth_key_secret.clone());
        plan.route = Some(route);
        plan.values = crate::helm_values(settings, sink_ip)?;
        Ok(plan)
    }

    /// Finds helm only (for `uninstall`, which needs no values, no sink address and no chart).
    pub fn without_values(settings: &Settings) -> Result<Self, ClusterError> {
        let helm = Helm::locate(settings)?;
        let chart = ChartSource::from_settings(settings);
        let values = String::new();
        let cluster = &settings.config.cluster;
        Ok(Self {
            helm,
            namespace: cluster.namespace.clone(),
            release: cluster.release.clone(),
            chart_version: cluster.chart_version.clone(),
            chart,
            secret_name: cluster.remote_write_secret.clone(),
            username: settings.config.sink.writer_username(),
            values,
            kube_context: cluster.context.clone(),
            route: None,
            auth_key_secret: None,
            auth_key_secret_name: cluster.tailscale.auth_key_secret.clone(),
        })
    }

    /// The `helm upgrade --install` arguments, reading values from `values_file`.
    pub fn helm_args(&self, values_file: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["upgrade", "--install", &self.release].iter().map(|s| (*s).to_owned()).collect();
        args.extend(self.chart.helm_args(&self.chart_version));
        args.extend(["--namespace", &self.namespace, "--values"].iter().map(|s| (*s).to_owned()));
        args.push(values_file.display().to_string());
        args.extend(self.context_args());
        args.extend(["--wait".to_owned(), "--timeout".to_owned(), "10m".to_owned()]);
        args
    }

    /// The `helm uninstall` arguments.
    pub fn uninstall_args(&self) -> Vec<String> {
        let mut args: Vec<String> =
            ["uninstall", &self.release, "--namespace", &self.namespace, "--ignore-not-found", "--wait"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        args.extend(self.context_args());
        args
    }

    fn context_args(&self) -> Vec<String> {
        match &self.kube_context {
            Some(context) => vec!["--kube-context".to_owned(), context.clone()],
            None => Vec::new(),
        }
    }

    /// What `install --dry-run` prints: the steps, the exact helm command, and the values. The password appears
    /// only as `[redacted]`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let values_file = Path::new("<temporary file with the values below>");
        let _ = writeln!(text, "greenflow cluster install would:");
        let _ = writeln!(text, "1. create the namespace {} if it does not exist", self.namespace);
        let _ = writeln!(
            text,
            "2. create or update the Secret {}/{} (keys: username={}, password=[redacted])",
            self.namespace, self.secret_name, self.username
        );
        let mut step = 3;
        if let Some(name) = &self.auth_key_secret {
            let _ = writeln!(
                text,
                "3. create or update the Secret {}/{name} (key: TS_AUTHKEY=[redacted], from TS_AUTHKEY)",
                self.namespace
            );
            step = 4;
        }
        let _ = writeln!(text, "{step}. run: {}", self.helm.command_line(&self.helm_args(values_file)));
        if let Some(route) = &self.route {
            let _ = writeln!(text, "\nroute: {}", route.describe());
        }
        let _ = writeln!(text, "\nvalues:\n---");
        text.push_str(&self.values);
        if !self.values.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}

/// What an install step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed with other contents and was updated.
    Updated,
    /// It was already as wanted.
    Unchanged,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        })
    }
}

/// What `cluster install` did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The namespace step.
    pub namespace: Change,
    /// The Secret step.
    pub secret: Change,
    /// The Tailscale auth-key Secret step, for the sidecar route.
    pub auth_key_secret: Option<Change>,
    /// The helm version used.
    pub helm_version: String,
    /// The Kubernetes version of the cluster.
    pub kubernetes_version: String,
    /// helm's output.
    pub helm_output: String,
}

/// What `cluster uninstall` did.
#[derive(Debug, Clone, Serialize)]
pub struct UninstallReport {
    /// helm's output.
    pub helm_output: String,
    /// Whether the Secret existed and was deleted.
    pub secret_deleted: bool,
    /// Whether the Lease existed and was deleted.
    pub lease_deleted: bool,
}

impl KubeCluster {
    /// Installs (or upgrades) greenflow's release: checks helm and the API server first, then ensures the namespace,
    /// creates or updates the remote-write Secret with `password`, and runs `helm upgrade --install` with the values
    /// in a temporary file. Idempotent.
    /// `auth_key` is the Tailscale auth key the sidecar route needs ([`ClusterError::NoAuthKey`] without it).
    pub async fn install(
        &self,
        plan: &InstallPlan,
        password: &Secret,
        auth_key: Option<&Secret>,
    ) -> Result<InstallReport, ClusterError> {
        plan.check_auth_key(auth_key)?;
        let helm = plan.helm.clone();
        let helm_version = blocking(move || helm.supported_version()).await?;
        let kubernetes_version = self.kubernetes_version().await?;
        // An upgrade during a run would fight it: Helm 4's server-side apply conflicts with the run's patch over
        // `spec.replicas`; Helm 3's merge applies any other change of values to the running Prometheus. The
        // namespace must exist for the Lease; creating it changes nothing a run uses.
        let namespace = self.ensure_namespace().await?;
        self.holding_the_lock(
            "cluster-install",
            self.install_locked(plan, password, auth_key, namespace, helm_version, kubernetes_version),
        )
        .await
    }

    async fn install_locked(
        &self,
        plan: &InstallPlan,
        password: &Secret,
        auth_key: Option<&Secret>,
        namespace: Change,
        helm_version: String,
        kubernetes_version: String,
    ) -> Result<InstallReport, ClusterError> {
        let secret = self.apply_remote_write_secret(&plan.username, password).await?;
        let auth_key_secret = match (&plan.auth_key_secret, auth_key) {
            (Some(name), Some(key)) => Some(
                self.apply_secret(
                    name,
                    BTreeMap::from([("TS_AUTHKEY".to_owned(), ByteString(key.expose().as_bytes().to_vec()))]),
                )
                .await?,
            ),
            _ => None,
        };
        let mut values_file = tempfile::Builder::new()
            .prefix("greenflow-values-")
            .suffix(".yaml")
            .tempfile()
            .map_err(|source| ClusterError::Io { action: "create a temporary values file".into(), source })?;
        std::io::Write::write_all(&mut values_file, plan.values.as_bytes())
            .map_err(|source| ClusterError::Io { action: "write the temporary values file".into(), source })?;
        let args = plan.helm_args(values_file.path());
        let helm = plan.helm.clone();
        let helm_output = blocking(move || helm.run(&args)).await?;
        drop(values_file);
        Ok(InstallReport { namespace, secret, auth_key_secret, helm_version, kubernetes_version, helm_output })
    }

    /// Runs `step` holding the experiment lock as `what@<host>`: taken as a run takes it (a live holder is refused
    /// with [`ClusterError::LockHeld`]; one seen unrenewed for its lease duration by this machine's clock is taken
    /// over), renewed every third of a lease while `step` runs (a helm call may take minutes), released after.
    async fn holding_the_lock<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        let holder = format!("{what}@{host}");
        self.acquire_lease_waiting(&holder, &|line: &str| tracing::info!("{line}")).await?;
        let mut step = std::pin::pin!(step);
        let mut renewals = tokio::time::interval(self.lease_duration / 3);
        renewals.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut step => break result,
                _ = renewals.tick() => {
                    if let Err(err) = self.renew_lease(&holder).await {
                        tracing::warn!(error = %err, "cannot renew the experiment lock while helm runs");
                    }
                }
            }
        };
        if let Err(err) = self.release_lease(&holder).await {
            tracing::warn!(error = %err, "cannot release the experiment lock");
        }
        result
    }

    /// Removes greenflow's release (helm uninstall), the remote-write Secret and the Lease; keeps the namespace.
    /// Holds the experiment lock meanwhile, so it is refused while a run holds it.
    pub async fn uninstall(&self, plan: &InstallPlan) -> Result<UninstallReport, ClusterError> {
        self.kubernetes_version().await?;
        let lease_existed = self.get_lease().await?.is_some();
        let (helm_output, secret_deleted) = self
            .holding_the_lock("cluster-uninstall", async {
                let args = plan.uninstall_args();
                let helm = plan.helm.clone();
                let helm_output = blocking(move || helm.run(&args)).await?;
                let secret_deleted = self.delete_remote_write_secret().await?;
                self.delete_secret(&plan.auth_key_secret_name).await?;
                Ok((helm_output, secret_deleted))
            })
            .await?;
        // Released above; whatever is left of it goes too.
        let lease_deleted = self.delete_lease().await? || lease_existed;
        Ok(UninstallReport { helm_output, secret_deleted, lease_deleted })
    }

    /// Creates the namespace when it does not exist.
    pub async fn ensure_namespace(&self) -> Result<Change, ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = &self.names.namespace;
        let action = || format!("create the namespace {name}");
        if api.get_opt(name).await.map_err(|e| ClusterError::api(action(), e))?.is_some() {
            return Ok(Change::Unchanged);
        }
        let namespace =
            Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(Change::Created),
            Err(err) if api_code(&err) == Some(409) => Ok(Change::Unchanged),
            Err(source) => Err(ClusterError::api(action(), source)),
        }
    }

    /// Creates or updates the remote-write Secret (keys `username` and `password`).
    pub async fn apply_remote_write_secret(&self, username: &str, password: &Secret) -> Result<Change, ClusterError> {
        let data = BTreeMap::from([
            ("username".to_owned(), ByteString(username.as_bytes().to_vec())),
            ("password".to_owned(), ByteString(password.expose().as_bytes().to_vec())),
        ]);
        let name = self.names.remote_write_secret.clone();
        self.apply_secret(&name, data).await
    }

    /// Creates the Secret `name` with `data`, or updates its keys in `data` (others are kept).
    async fn apply_secret(&self, name: &str, data: BTreeMap<String, ByteString>) -> Result<Change, ClusterError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), &self.names.namespace);
        let reference = format!("{}/{name}", self.names.namespace);
        let existing =
            api.get_opt(name).await.map_err(|e| ClusterError::api(format!("read the Secret {reference}"), e))?;
        match existing {
            None => {
                let secret = KubeSecret {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "greenflow".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &secret)
                    .await
                    .map_err(|e| ClusterError::api(format!("create the Secret {reference}"), e))?;
                Ok(Change::Created)
            }
            Some(mut secret) => {
                let same = secret
                    .data
                    .as_ref()
                    .is_some_and(|existing| data.iter().all(|(key, value)| existing.get(key) == Some(value)));
                if same && secret.string_data.is_none() {
                    return Ok(Change::Unchanged);
                }
                let mut merged = secret.data.take().unwrap_or_default();
                merged.extend(data);
                secret.data = Some(merged);
                secret.string_data = None;
                api.replace(name, &PostParams::default(), &secret)
                    .await
                    .map_err(|e| ClusterError::api(format!("update the Secret {reference}"), e))?;
                Ok(Change::Updated)
            }
        }
    }

    /// Deletes the remote-write Secret. Not an error when it is gone.
    pub async fn delete_remote_write_secret(&self) -> Result<bool, ClusterError> {
        let name = self.names.remote_write_secret.clone();
        self.delete_secret(&name).await
    }

    /// Deletes the Secret `name`; false when it was not there.
    async fn delete_secret(&self, name: &str) -> Result<bool, ClusterError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), &self.names.namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(err) if api_code(&err) == Some(404) => Ok(false),
            Err(source) => Err(ClusterError::api(format!("delete the Secret {}/{name}", self.names.namespace), source)),
        }
    }
}

impl InstallPlan {
    /// For a route with a sidecar, checks its auth key without showing it: present, and shaped like one
    /// (`tskey-auth-...`, or an OAuth client secret `tskey-client-...`).
    pub fn check_auth_key(&self, auth_key: Option<&Secret>) -> Result<(), ClusterError> {
        match self.route.as_ref().and_then(|r| r.sidecar.as_ref()) {
            Some(sidecar) => check_auth_key(auth_key, &sidecar.tags),
            None => Ok(()),
        }
    }
}

/// [`InstallPlan::check_auth_key`] before there is a plan (before helm is looked for): the key is the likelier
/// thing to be missing.
pub fn check_route_auth_key(route: &crate::Route, auth_key: Option<&Secret>) -> Result<(), ClusterError> {
    match &route.sidecar {
        Some(sidecar) => check_auth_key(auth_key, &sidecar.tags),
        None => Ok(()),
    }
}

fn check_auth_key(auth_key: Option<&Secret>, tags: &[String]) -> Result<(), ClusterError> {
    match auth_key {
        // tailscale's `feature/oauthkey`: a client secret registers only tagged nodes.
        Some(key) if key.expose().starts_with("tskey-client-") && tags.is_empty() => Err(ClusterError::NoAuthKey {
            problem: "TS_AUTHKEY is an OAuth client secret, whose nodes must be tagged: set cluster.tailscale.tags \
                      (e.g. [tag:greenflow])"
                .into(),
        }),
        None => Err(ClusterError::NoAuthKey { problem: "TS_AUTHKEY is not set".into() }),
        Some(key) if !key.expose().starts_with("tskey-") || key.expose().chars().any(|c| c.is_whitespace()) => {
            Err(ClusterError::NoAuthKey {
                problem: "TS_AUTHKEY does not look like a Tailscale auth key (tskey-auth-... or tskey-client-...)"
                    .into(),
            })
        }
        Some(_) => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClusterError::Io { action: "run helm".into(), source: std::io::Error::other(e) })?
}

/// The variables helm is given, of greenflow's environment `vars`: the basics, helm's and Kubernetes' own
/// (`HELM_*`, `KUBECONFIG`), the proxies and CA files, and those a kubeconfig's credential plugin reads (`AWS_*`,
/// `AZURE_*`, `GOOGLE_*`, `CLOUDSDK_*`). Nothing else: the sink's password and Tailscale's key (none of these names)
/// never reach it.
pub fn helm_env(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    const NAMES: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "KUBECONFIG",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    const PREFIXES: &[&str] = &["HELM_", "XDG_", "KUBE", "AWS_", "AZURE_", "GOOGLE_", "CLOUDSDK_"];
    vars.into_iter()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            NAMES.contains(&name.as_ref()) || PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{ChartSource, helm_env};

    #[test]
    fn each_chart_source_names_the_chart_its_own_way() {
        let args = |source: ChartSource| source.helm_args("88.5.3");
        assert_eq!(
            args(ChartSource::Repository("https://charts.example.org".into())),
            ["kube-prometheus-stack", "--repo", "https://charts.example.org", "--version", "88.5.3"]
        );
        assert_eq!(
            args(ChartSource::Oci("oci://ghcr.io/lab/kube-prometheus-stack".into())),
            ["oci://ghcr.io/lab/kube-prometheus-stack", "--version", "88.5.3"]
        );
        // A local archive carries its version: helm takes no --version for it.
        assert_eq!(
            args(ChartSource::Archive("/srv/charts/kube-prometheus-stack-88.5.3.tgz".into())),
            ["/srv/charts/kube-prometheus-stack-88.5.3.tgz"]
        );
    }

    #[test]
    fn helm_gets_its_own_and_the_kubeconfig_s_variables_and_no_secret() {
        let vars = [
            "PATH",
            "KUBECONFIG",
            "HELM_CACHE_HOME",
            "https_proxy",
            "AWS_PROFILE",
            "XDG_CONFIG_HOME",
            "GREENFLOW_SINK_PASSWORD",
            "TS_AUTHKEY",
            "TAILSCALE_AUTH_KEY",
            "GRAFANA_ADMIN_PASSWORD",
            "GITHUB_TOKEN",
            "EXPERIMENT_STORAGE_URL",
        ]
        .map(|name| (name.into(), "x".into()));
        let kept: Vec<String> =
            helm_env(vars).into_iter().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
        assert_eq!(kept, ["PATH", "KUBECONFIG", "HELM_CACHE_HOME", "https_proxy", "AWS_PROFILE", "XDG_CONFIG_HOME"]);
    }
}
