//! The `kube` back-end through the [`ClusterBackend`] trait, against greenflow-cluster's fake API server: the order
//! of calls the lifecycle makes, and how lock and readiness failures reach it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use greenflow_cluster::testing::{FakeApiServer, Operator, Timing};
use greenflow_runs::drain::parse_queue_metrics;
use greenflow_runs::{BackendError, BackendKind, ClusterBackend, KubeBackend, RunId};
use serde_json::json;

const METRICS: &str = "prometheus_remote_storage_queue_highest_timestamp_seconds{remote_name=\"greenflow-sink\",url=\"u\"} 1700000100\n\
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"greenflow-sink\",url=\"u\"} 1700000100\n\
prometheus_remote_storage_samples_pending{remote_name=\"greenflow-sink\",url=\"u\"} 0\n\
prometheus_remote_storage_samples_failed_total{remote_name=\"greenflow-sink\",url=\"u\"} 3\n";

fn run_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("greenflow_run".to_owned(), "01JRUN".to_owned()),
        ("greenflow_experiment".to_owned(), "kafka".to_owned()),
    ])
}

#[tokio::test]
async fn a_whole_run_through_the_trait() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_metrics(|| METRICS.into());
    let mut backend = KubeBackend::new(fake.cluster());
    assert_eq!(backend.kind(), BackendKind::Kube);
    assert_eq!(backend.renew_interval(), Duration::from_secs(1), "the lifecycle looks often; a timer renews");

    let info = backend.preflight().await.unwrap();
    assert_eq!(info.versions["kubernetes"], "v1.33.1");
    assert_eq!(info.versions["prometheus"], "v3.7.1");
    assert_eq!(info.versions["chart"], "88.5.3");
    assert!(info.description.starts_with("Prometheus monitoring/greenflow-kube-prometheus-prometheus (v3.7.1)"));
    assert!(fake.writes().is_empty(), "preflight changes nothing");

    let run = RunId::new(time::OffsetDateTime::now_utc());
    backend.acquire_lock(&run, "01JRUN@laptop", &|_| {}).await.unwrap();
    let progress_lines = Mutex::new(Vec::new());
    let progress = |line: &str| progress_lines.lock().unwrap().push(line.to_owned());
    backend.scale_up(&run_labels(), Duration::from_secs(5), &progress).await.unwrap();
    assert!(!progress_lines.lock().unwrap().is_empty(), "the stale read was reported");
    assert_eq!(fake.prometheus().unwrap()["spec"]["externalLabels"]["greenflow_run"], "01JRUN");

    backend.renew_lock().await.unwrap();
    let texts = backend.prometheus_metrics().await.unwrap();
    assert_eq!(texts.len(), 1, "one pod, one queue");
    let queue = parse_queue_metrics(&texts[0], backend.remote_name()).unwrap();
    assert_eq!(queue.samples_failed, 3.0);

    backend.scale_down(&|_| {}).await.unwrap();
    assert!(fake.prometheus_pod().is_none(), "scale-down returns once the pod is gone");
    backend.release_lock().await.unwrap();
    let prometheus = fake.prometheus().unwrap();
    assert_eq!(prometheus["spec"]["replicas"], 0);
    assert_eq!(prometheus["spec"]["externalLabels"], json!({"greenflow_deployment": "default"}));
    assert!(fake.lease().is_none());

    let patches: Vec<_> = fake.writes().into_iter().filter(|w| w.method == "PATCH").collect();
    assert_eq!(patches.len(), 2);
    assert_eq!(
        patches[1].json(),
        json!({"spec": {"replicas": 0, "externalLabels": {"greenflow_run": null, "greenflow_experiment": null}}})
    );
}

#[tokio::test]
async fn a_held_lock_reaches_the_lifecycle_as_lock_held() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_lease(
        "greenflow-experiment",
        "01JOTHER@lab",
        Duration::from_secs(5),
        1,
    );
    // Renewed while watched: alive, whatever the clocks say.
    let renewer = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            fake.renew_lease_as("01JOTHER@lab");
        })
    };
    let mut backend = KubeBackend::new(fake.cluster());
    let run = RunId::new(time::OffsetDateTime::now_utc());
    let err = backend.acquire_lock(&run, "01JRUN@laptop", &|_| {}).await.unwrap_err();
    renewer.await.unwrap();
    assert!(matches!(&err, BackendError::LockHeld { holder, .. } if holder == "01JOTHER@lab"), "{err:?}");
    // Releasing a lock this run never got leaves the other run's alone.
    backend.release_lock().await.unwrap();
    assert!(fake.lease().is_some());
}

#[tokio::test]
async fn never_available_is_not_ready_and_scale_down_still_works() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_operator(Operator::NeverAvailable);
    let mut backend = KubeBackend::new(fake.cluster());
    let err = backend.scale_up(&run_labels(), Duration::from_millis(200), &|_| {}).await.unwrap_err();
    assert!(matches!(err, BackendError::NotReady { .. }), "{err:?}");
    backend.scale_down(&|_| {}).await.unwrap();
    assert_eq!(fake.prometheus().unwrap()["spec"]["replicas"], 0);
}

#[tokio::test]
async fn a_running_prometheus_is_refused_and_nothing_is_patched() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_running_prometheus();
    fake.clear_requests();
    let mut backend = KubeBackend::new(fake.cluster());
    let err = backend.scale_up(&run_labels(), Duration::from_secs(5), &|_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("already runs") && text.contains("greenflow runs recover"), "{text}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn a_scale_up_waits_for_the_previous_pod_to_be_gone() {
    let timing = Timing {
        pod_gone_after: Duration::from_secs(2),
        pod_unready_after: Duration::from_secs(1),
        ..Timing::default()
    };
    let fake = FakeApiServer::new("monitoring", "greenflow").with_timing(timing).with_running_prometheus();
    let cluster = fake.cluster();
    cluster.scale(0, &BTreeMap::new(), &[]).await.unwrap();
    assert!(fake.prometheus_pod().unwrap()["metadata"]["deletionTimestamp"].is_string());
    let mut backend = KubeBackend::new(fake.cluster());
    let lines = Mutex::new(Vec::new());
    let progress = |line: &str| lines.lock().unwrap().push(line.to_owned());
    let began = std::time::Instant::now();
    backend.scale_up(&run_labels(), Duration::from_secs(10), &progress).await.unwrap();
    assert!(began.elapsed() >= Duration::from_millis(1500), "started on the dying pod: {:?}", began.elapsed());
    let pod = fake.prometheus_pod().unwrap();
    assert!(pod["metadata"]["deletionTimestamp"].is_null(), "a new pod: {pod}");
    assert!(lines.lock().unwrap().iter().any(|l| l.contains("still stopping")), "{:?}", lines.lock().unwrap());
}

#[tokio::test]
async fn a_scale_down_that_leaves_the_pod_is_an_error_naming_it() {
    let timing = Timing { pod_gone_after: Duration::from_secs(30), ..Timing::default() };
    let fake = FakeApiServer::new("monitoring", "greenflow").with_timing(timing).with_running_prometheus();
    let mut backend = KubeBackend::new(fake.cluster()).with_pod_gone_timeout(Duration::from_millis(300));
    let err = backend.scale_down(&|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("still there after"), "{err}");
}

#[tokio::test]
async fn a_missing_prometheus_fails_preflight_with_the_fix() {
    let fake = FakeApiServer::new("monitoring", "greenflow").without_prometheus();
    let err = KubeBackend::new(fake.cluster()).preflight().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no Prometheus from release greenflow in namespace monitoring: run `greenflow cluster install`"
    );
}
