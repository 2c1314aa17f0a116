//! `greenflow cluster install` with the real Helm 3 and Helm 4 against the fake API server served over HTTP
//! (greenflow-cluster's `testing` module, rules 1–9): the chart's Prometheus is created at zero replicas with helm's
//! release record, the experiment lock keeps helm from running during a run, and what each helm does to a run's
//! `spec.replicas` when the lock is bypassed (Helm 4's server-side apply conflicts; Helm 3 patches a custom resource
//! with a two-way merge of its old and new manifests, `pkg/kube/client.go` `createPatch`, which leaves a field the
//! chart did not change). The chart is a small stand-in for kube-prometheus-stack 88.5.3 with the chart's own naming
//! (`templates/_helpers.tpl`, fullname truncated at 26 characters) and its Prometheus resource's labels.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{Project, describe};
use greenflow_cluster::testing::FakeApiServer;

const PASSWORD: &str = "not-to-be-printed-4711";
const NAMESPACE: &str = "monitoring";
const RELEASE: &str = "greenflow";

/// The helm binary of one major version among `helm`, `helm3` and `helm4` on the tests' PATH
/// (scripts/install-deps installs Helm 4 as `helm` and Helm 3 as `helm3`).
fn helm(major: u32) -> PathBuf {
    ["helm", "helm3", "helm4"]
        .iter()
        .filter_map(|name| common::which_program(name))
        .find(|path| {
            let version = std::process::Command::new(path).args(["version", "--template", "{{.Version}}"]).output();
            version.is_ok_and(|v| String::from_utf8_lossy(&v.stdout).starts_with(&format!("v{major}.")))
        })
        .unwrap_or_else(|| panic!("Helm {major} is needed for this test: run scripts/install-deps"))
}

/// Writes the stand-in chart and packages it with `helm` into `<dir>/charts`, as `helm pull` would save it.
fn chart_dir(helm: &Path, dir: &Path) -> PathBuf {
    let source = dir.join("kube-prometheus-stack");
    std::fs::create_dir_all(source.join("templates")).unwrap();
    std::fs::write(source.join("Chart.yaml"), "apiVersion: v2\nname: kube-prometheus-stack\nversion: 88.5.3\n")
        .unwrap();
    std::fs::write(source.join("values.yaml"), "prometheus:\n  prometheusSpec:\n    replicas: 1\n").unwrap();
    // kube-prometheus-stack templates/_helpers.tpl: `kube-prometheus-stack.fullname`.
    std::fs::write(
        source.join("templates/_helpers.tpl"),
        "{{- define \"fullname\" -}}\n\
         {{- if contains .Chart.Name .Release.Name -}}{{- .Release.Name | trunc 26 | trimSuffix \"-\" -}}\n\
         {{- else -}}{{- printf \"%s-%s\" .Release.Name .Chart.Name | trunc 26 | trimSuffix \"-\" -}}{{- end -}}\n\
         {{- end -}}\n",
    )
    .unwrap();
    // kube-prometheus-stack templates/prometheus/prometheus.yaml, the parts greenflow reads and writes.
    std::fs::write(
        source.join("templates/prometheus.yaml"),
        "apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata:\n\
         \x20 name: {{ include \"fullname\" . }}-prometheus\n  namespace: {{ .Release.Namespace }}\n  labels:\n\
         \x20   app: kube-prometheus-stack-prometheus\n    release: {{ .Release.Name | quote }}\n\
         \x20   chart: {{ .Chart.Name }}-{{ .Chart.Version }}\n    heritage: {{ .Release.Service | quote }}\n\
         \x20   app.kubernetes.io/managed-by: {{ .Release.Service | quote }}\n\
         spec:\n  replicas: {{ .Values.prometheus.prometheusSpec.replicas }}\n  version: v3.7.1\n",
    )
    .unwrap();
    let charts = dir.join("charts");
    let output = std::process::Command::new(helm)
        .arg("package")
        .arg(&source)
        .arg("--destination")
        .arg(&charts)
        .output()
        .unwrap();
    assert!(output.status.success(), "helm package: {}", describe(&output));
    charts
}

/// A project whose cluster is the fake at `url`, installing with `helm` from a chart directory; with its kubeconfig
/// and that directory.
fn project(fake: &FakeApiServer, url: &str, helm: &Path) -> (Project, PathBuf, PathBuf) {
    let scratch = tempfile::tempdir().unwrap().keep();
    let charts = chart_dir(helm, &scratch);
    let project = Project::with_config(&format!(
        "  public_host: sink.example.org\ncluster:\n  helm_binary: {}\n  chart_repository: {}\n",
        helm.display(),
        charts.display()
    ))
    .env("GREENFLOW_SINK_PASSWORD", PASSWORD);
    let kubeconfig = project.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig(url)).unwrap();
    (project, kubeconfig, charts)
}

/// Runs a blocking command from async code (the fake answers on the runtime meanwhile).
async fn output(mut command: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

/// The requests the fake answered, one per line, for failure messages.
fn paths(fake: &FakeApiServer) -> String {
    fake.requests()
        .iter()
        .map(|r| format!("\n  {} {}?{} {:?} {:.200}", r.method, r.path, r.query, r.content_type, r.body))
        .collect()
}

fn replicas(fake: &FakeApiServer) -> Option<i64> {
    fake.prometheus().and_then(|p| p["spec"]["replicas"].as_i64())
}

/// A run's scale-up: greenflow's own patch, as `greenflow run` sends it.
async fn scale_up_as_a_run(fake: &FakeApiServer) {
    let cluster = fake.cluster();
    let add = BTreeMap::from([("greenflow_run".to_owned(), "r-1".to_owned())]);
    cluster.scale(1, &add, &[]).await.unwrap();
    assert_eq!(replicas(fake), Some(1));
}

/// A fake cluster after a first `greenflow cluster install` with Helm `major`.
struct Installed {
    helm: PathBuf,
    helm_name: String,
    fake: FakeApiServer,
    project: Project,
    kubeconfig: PathBuf,
    charts: PathBuf,
    first: Output,
}

async fn installed(major: u32) -> Installed {
    let helm = helm(major);
    let helm_name = format!("Helm {major}");
    let fake = FakeApiServer::new(NAMESPACE, RELEASE).without_prometheus();
    let url = fake.serve_http().await.unwrap();
    let (project, kubeconfig, charts) = project(&fake, &url, &helm);
    let mut install = project.cmd(&["cluster", "install"]);
    install.env("KUBECONFIG", &kubeconfig);
    let first = output(install).await;
    assert!(first.status.success(), "{helm_name}: {}\nrequests: {}", describe(&first), paths(&fake));
    Installed { helm, helm_name, fake, project, kubeconfig, charts, first }
}

async fn install_creates_the_release_and_is_refused_during_a_run(major: u32) {
    let Installed { helm_name, fake, project, kubeconfig, first, .. } = installed(major).await;
    let text = format!("{}{}", String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(!text.contains(PASSWORD), "{text}");
    let prometheus = fake.prometheus().expect("the chart's Prometheus resource was created");
    assert_eq!(prometheus["metadata"]["name"], "greenflow-kube-prometheus-prometheus", "fullname truncated at 26");
    assert_eq!(replicas(&fake), Some(0), "greenflow's values keep Prometheus at zero outside a run");
    assert!(fake.secret("sh.helm.release.v1.greenflow.v1").is_some(), "helm recorded release 1: {}", paths(&fake));
    assert!(fake.lease().is_none_or(|l| l["spec"]["holderIdentity"].is_null()), "the lock was released");

    // A second install is an upgrade (release 2), still at zero replicas.
    let mut again = project.cmd(&["cluster", "install"]);
    again.env("KUBECONFIG", &kubeconfig);
    let second = output(again).await;
    assert!(second.status.success(), "{helm_name}: {}", describe(&second));
    assert!(fake.secret("sh.helm.release.v1.greenflow.v2").is_some(), "helm recorded release 2");

    // During a run (the Lease held and renewed by it), install is refused and helm never runs.
    scale_up_as_a_run(&fake).await;
    let run = fake.cluster();
    run.acquire_lease("run r-1@laptop").await.unwrap();
    let renewing = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            run.renew_lease("run r-1@laptop").await.unwrap();
        }
    });
    let requests_before = fake.requests().len();
    let mut during = project.cmd(&["cluster", "install"]);
    during.env("KUBECONFIG", &kubeconfig);
    let refused = output(during).await;
    renewing.abort();
    assert_eq!(refused.status.code(), Some(2), "{helm_name}: {}", describe(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("run r-1@laptop"), "the refusal names the run: {err}");
    assert_eq!(replicas(&fake), Some(1), "the run's Prometheus is left running");
    assert!(fake.secret("sh.helm.release.v1.greenflow.v3").is_none(), "helm did not run");
    let writes: Vec<_> =
        fake.requests()[requests_before..].iter().filter(|r| r.method != "GET").map(|r| r.path.clone()).collect();
    assert!(writes.iter().all(|path| path.contains("/leases")), "only the lock was touched: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_4_installs_the_chart_and_is_kept_away_from_a_run() {
    install_creates_the_release_and_is_refused_during_a_run(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_3_installs_the_chart_and_is_kept_away_from_a_run() {
    install_creates_the_release_and_is_refused_during_a_run(3).await;
}

/// What the lock prevents: each helm run straight over a run's scale-up.
async fn helm_upgrade_over_a_run(major: u32) -> (Output, Option<i64>) {
    let Installed { helm, fake, project, kubeconfig, charts, .. } = installed(major).await;
    scale_up_as_a_run(&fake).await;
    let chart = project.path().join("values.yaml");
    std::fs::write(&chart, "prometheus:\n  prometheusSpec:\n    replicas: 0\n").unwrap();
    let archive = std::fs::read_dir(&charts).unwrap().next().unwrap().unwrap().path();
    let mut upgrade = std::process::Command::new(&helm);
    upgrade
        .args(["upgrade", "--install", RELEASE])
        .arg(&archive)
        .args(["--namespace", NAMESPACE, "--values"])
        .arg(&chart)
        .env("KUBECONFIG", &kubeconfig);
    let upgraded = output(upgrade).await;
    (upgraded, replicas(&fake))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_4_over_a_run_conflicts_on_spec_replicas() {
    let (upgraded, replicas) = helm_upgrade_over_a_run(4).await;
    assert!(!upgraded.status.success(), "{}", describe(&upgraded));
    let err = String::from_utf8_lossy(&upgraded.stderr);
    assert!(err.contains("conflict") && err.contains(".spec.replicas"), "{err}");
    assert_eq!(replicas, Some(1), "the run's Prometheus keeps running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_3_over_a_run_merges_only_what_the_chart_changed() {
    let (upgraded, replicas) = helm_upgrade_over_a_run(3).await;
    assert!(upgraded.status.success(), "{}", describe(&upgraded));
    assert_eq!(replicas, Some(1), "the chart's replicas did not change between releases, so the run's stays");
}
