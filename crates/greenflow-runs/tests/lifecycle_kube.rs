//! The whole run lifecycle on the `kube` back-end: a real `kube::Client` talking to greenflow-cluster's fake API
//! server (kube-rs's `tower_test` mock pattern), and a real VictoriaMetrics as the sink. A small task plays the
//! cluster's Prometheus: while the fake Prometheus resource has a replica it writes samples carrying the resource's
//! external labels into VictoriaMetrics, and the service-proxy `/metrics` reports its queue.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenflow_cluster::testing::{FakeApiServer, Operator, Sidecar, Timing};
use greenflow_runs::lifecycle::{self, RunContext};
use greenflow_runs::{
    DrainOutcome, Interrupts, KubeBackend, Reporter, RunError, RunRecord, RunRequest, RunStatus, RunStore, Workload,
};
use greenflow_sink::{ImportSeries, SinkClient};
use serde_json::Value;

/// A VictoriaMetrics on a free loopback port, killed on drop.
struct Vm {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Vm {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg("-retentionPeriod=100y")
            // As greenflow's sink runs it (sink.victoria_metrics.search_latency_offset); the default hides 30 s.
            .arg("-search.latencyOffset=1s")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics (Debian package victoria-metrics; scripts/install-deps installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = SinkClient::new(base.clone(), None);
        while client.health().await.is_err() {
            assert!(Instant::now() < deadline, "VictoriaMetrics did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, base, _dir: dir }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Reporter for Lines {
    fn phase(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
    fn update(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

/// Which generation of Prometheus' remote-write metrics the simulated Prometheus prints.
#[derive(Clone, Copy)]
enum Generation {
    /// >= 3.7: per-queue `prometheus_remote_storage_queue_highest_timestamp_seconds`.
    PerQueue,
    /// Older: global `prometheus_remote_storage_highest_timestamp_in_seconds`.
    Global,
}

/// The simulated cluster Prometheus' queue: newest sample sent (ms) and failed samples.
#[derive(Default)]
struct Queue {
    sent_ms: AtomicU64,
    failed: AtomicU64,
    /// Nothing more gets through (the sink refuses every write): the queue stops advancing.
    stalled: std::sync::atomic::AtomicBool,
    /// The pod has not loaded its configuration yet (`prometheus_config_last_reload_successful 0`).
    config_pending: std::sync::atomic::AtomicBool,
}

fn metrics_text(queue: &Queue, generation: Generation) -> String {
    let sent = queue.sent_ms.load(Ordering::SeqCst) as f64 / 1000.0;
    let failed = queue.failed.load(Ordering::SeqCst);
    let labels = r#"{remote_name="greenflow-sink",url="https://laptop.tail1234.ts.net/vm/api/v1/write"}"#;
    let highest = match generation {
        Generation::PerQueue => format!("prometheus_remote_storage_queue_highest_timestamp_seconds{labels} {sent}\n"),
        Generation::Global => format!("prometheus_remote_storage_highest_timestamp_in_seconds {sent}\n"),
    };
    // The pod's own clock: it started a minute ago and loaded its configuration at start, or not yet.
    let started = time::OffsetDateTime::now_utc().unix_timestamp() - 60;
    let loaded = u8::from(!queue.config_pending.load(Ordering::SeqCst));
    format!(
        "{highest}prometheus_remote_storage_queue_highest_sent_timestamp_seconds{labels} {sent}\n\
         prometheus_remote_storage_samples_pending{labels} 0\n\
         prometheus_remote_storage_samples_failed_total{labels} {failed}\n\
         prometheus_remote_storage_samples_dropped_total{labels} 0\n\
         prometheus_config_last_reload_successful {loaded}\n\
         prometheus_config_last_reload_success_timestamp_seconds {started}\n\
         process_start_time_seconds {started}\n"
    )
}

/// Plays the cluster's Prometheus: while the resource has a replica, writes `node_load1` with its external labels.
fn simulate_prometheus(fake: FakeApiServer, sink: SinkClient, queue: Arc<Queue>, fail_after_start: u64) {
    tokio::spawn(async move {
        let mut failed_once = false;
        let mut labelled_since: Option<std::time::Instant> = None;
        loop {
            // The labels the running pod uses: they follow a patch only after the config reload.
            if let Some(mut metric) = fake.running_labels()
                && !queue.stalled.load(Ordering::SeqCst)
            {
                metric.insert("__name__".into(), "node_load1".into());
                let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
                let has_run = metric.contains_key("greenflow_run");
                let series = ImportSeries { metric, values: vec![0.5], timestamps: vec![now_ms] };
                if sink.import(&[series]).await.is_ok() {
                    queue.sent_ms.store(now_ms as u64, Ordering::SeqCst);
                }
                // Failures come a second into the run: after the baseline the lifecycle reads at scale-up.
                if !has_run {
                    labelled_since = None;
                } else if labelled_since.is_none() {
                    labelled_since = Some(std::time::Instant::now());
                }
                let a_second_in = labelled_since.is_some_and(|at| at.elapsed() >= Duration::from_secs(1));
                if fail_after_start > 0 && !failed_once && a_second_in {
                    failed_once = true;
                    queue.failed.fetch_add(fail_after_start, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn request(workload: Workload) -> RunRequest {
    RunRequest {
        name: "kafka-vs-redpanda".into(),
        workload,
        scrape_interval: Duration::from_millis(100),
        ready_timeout: Duration::from_secs(5),
        first_sample_timeout: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(20),
        force: false,
        live_counts: true,
        versions: BTreeMap::from([("greenflow".into(), "test".into())]),
    }
}

struct Setup {
    vm: Vm,
    fake: FakeApiServer,
    queue: Arc<Queue>,
    runs: tempfile::TempDir,
    lines: Lines,
}

impl Setup {
    async fn new(fake: FakeApiServer, generation: Generation, fail_after_start: u64) -> Self {
        let vm = Vm::start().await;
        let queue = Arc::new(Queue::default());
        let q = Arc::clone(&queue);
        let fake = fake.with_metrics(move || metrics_text(&q, generation));
        simulate_prometheus(fake.clone(), SinkClient::new(vm.base.clone(), None), Arc::clone(&queue), fail_after_start);
        Self { vm, fake, queue, runs: tempfile::tempdir().unwrap(), lines: Lines::default() }
    }

    async fn run(&self, request: &RunRequest) -> Result<RunRecord, RunError> {
        self.run_with_storage(request, None).await
    }

    async fn run_with_storage(&self, request: &RunRequest, storage: Option<&Vm>) -> Result<RunRecord, RunError> {
        let (_tx, interrupts) = Interrupts::manual();
        self.run_with(request, storage, self.fake.cluster(), interrupts).await
    }

    async fn run_with(
        &self,
        request: &RunRequest,
        storage: Option<&Vm>,
        cluster: greenflow_cluster::KubeCluster,
        interrupts: Interrupts,
    ) -> Result<RunRecord, RunError> {
        let mut backend = KubeBackend::new(cluster);
        let mut ctx = RunContext {
            sink: SinkClient::new(self.vm.base.clone(), None),
            writer: Some(SinkClient::new(self.vm.base.clone(), None)),
            storage: storage.map(|vm| SinkClient::new(vm.base.clone(), None)),
            store: RunStore::new(self.runs.path()),
            reporter: &self.lines,
            interrupts,
        };
        lifecycle::run(&mut backend, &mut ctx, request).await
    }

    /// Every request the run made is one the printed Role allows (`greenflow cluster rbac`).
    fn assert_rbac_allows_every_request(&self) {
        let refused: Vec<String> = self
            .fake
            .requests()
            .iter()
            .filter(|r| !greenflow_cluster::rbac::is_allowed(&r.method, &r.path, &r.query))
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
            .collect();
        assert!(refused.is_empty(), "requests the printed RBAC does not allow: {refused:#?}");
    }

    fn stored(&self) -> Vec<RunRecord> {
        RunStore::new(self.runs.path()).list().unwrap()
    }

    fn methods(&self) -> Vec<String> {
        self.fake
            .writes()
            .iter()
            .map(|w| format!("{} {}", w.method, w.path.rsplit('/').next().unwrap_or_default()))
            .collect()
    }
}

fn prometheus_is_scaled_down(fake: &FakeApiServer) {
    let prometheus = fake.prometheus().unwrap();
    assert_eq!(prometheus["spec"]["replicas"], 0, "{prometheus}");
    let labels = prometheus["spec"]["externalLabels"].as_object().unwrap();
    assert!(!labels.contains_key("greenflow_run") && labels.contains_key("greenflow_deployment"), "{labels:?}");
}

/// The series `promql` selects now, newest samples included: asked for a minute past now, so that
/// VictoriaMetrics' `-search.latencyOffset` does not hide a marker written a moment ago.
async fn query(vm: &Vm, promql: &str) -> Vec<Value> {
    let sink = SinkClient::new(vm.base.clone(), None);
    sink.force_flush().await.unwrap();
    let later = time::OffsetDateTime::now_utc().unix_timestamp() as f64 + 60.0;
    let samples = sink.query_at(promql, Some(later)).await.unwrap();
    samples.into_iter().map(|s| serde_json::to_value(s.metric).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_happy_path() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(2)))).await.unwrap();

    assert_eq!(record.status, RunStatus::Complete, "{record:?}\n{:?}", setup.lines.0.lock().unwrap());
    assert_eq!(record.backend, "kube");
    let drain = record.drain.as_ref().unwrap();
    assert_eq!(drain.outcome, DrainOutcome::Drained);
    assert!(drain.sink_behind_seconds.unwrap() <= 0.0, "the sink holds a sample at or after the end: {drain:?}");
    assert!(record.samples.unwrap() >= 10, "{record:?}");
    assert_eq!(record.versions["prometheus"], "v3.7.1");
    assert_eq!(record.versions["kubernetes"], "v1.33.1");
    assert_eq!(setup.stored(), vec![record.clone()], "the saved record is the returned one");

    // Lease taken, resource patched up, (renewals,) patched down, lease released: in that order.
    let writes = setup.methods();
    assert_eq!(writes.first().map(String::as_str), Some("POST leases"), "{writes:?}");
    let patches: Vec<usize> =
        writes.iter().enumerate().filter(|(_, w)| w.starts_with("PATCH")).map(|(i, _)| i).collect();
    assert_eq!(patches.len(), 2, "{writes:?}");
    assert_eq!(writes.last().map(String::as_str), Some("DELETE greenflow-experiment"), "{writes:?}");
    let up = &setup.fake.writes()[patches[0]];
    assert_eq!(up.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(up.json()["spec"]["replicas"], 1);
    assert_eq!(up.json()["spec"]["externalLabels"]["greenflow_run"], record.id.as_str());
    assert_eq!(up.json()["spec"]["externalLabels"]["greenflow_experiment"], "kafka-vs-redpanda");
    prometheus_is_scaled_down(&setup.fake);
    assert!(setup.fake.lease().is_none());

    let markers = query(&setup.vm, &format!(r#"greenflow_run_info{{greenflow_run="{}"}}"#, record.id)).await;
    let mut phases: Vec<&str> = markers.iter().map(|m| m["phase"].as_str().unwrap()).collect();
    phases.sort_unstable();
    assert_eq!(phases, ["end", "start"]);
    setup.assert_rbac_allows_every_request();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_starts_only_once_prometheus_has_loaded_its_configuration() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 0).await;
    setup.queue.config_pending.store(true, Ordering::SeqCst);
    let queue = Arc::clone(&setup.queue);
    let fake = setup.fake.clone();
    // The configuration loads 2 s after the scale-up patch (samples with the run's id flow before that).
    tokio::spawn(async move {
        while fake.prometheus().is_none_or(|p| p["spec"]["replicas"] != 1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        queue.config_pending.store(false, Ordering::SeqCst);
    });
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Complete, "{record:?}");
    let said = said(&setup);
    assert!(said.contains("waiting for every Prometheus pod to load its configuration"), "{said}");
    let first: f64 = said
        .lines()
        .find_map(|l| l.strip_prefix("first sample in the sink ")?.split('s').next()?.parse().ok())
        .unwrap();
    assert!(first >= 1.5, "the run started {first}s after scale-up, before the configuration was loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_that_never_loads_fails_the_run_and_scales_down() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 0).await;
    setup.queue.config_pending.store(true, Ordering::SeqCst);
    let mut req = request(Workload::For(Duration::from_secs(1)));
    req.first_sample_timeout = Duration::from_secs(3);
    let record = setup.run(&req).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    let error = record.error.unwrap_or_default();
    assert!(
        error.contains("labels were not proven") && error.contains("prometheus_config_last_reload_successful"),
        "{error}"
    );
    prometheus_is_scaled_down(&setup.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_prometheus_metric_names_drain_too() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::Global, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Complete, "{record:?}");
    assert_eq!(record.drain.unwrap().outcome, DrainOutcome::Drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_samples_make_the_run_lossy() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 7).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Lossy, "{record:?}");
    let drain = record.drain.unwrap();
    assert_eq!((drain.outcome, drain.samples_failed), (DrainOutcome::Lossy, 7));
    assert!(drain.detail.unwrap().contains("7 samples failed"));
    prometheus_is_scaled_down(&setup.fake);
    assert!(setup.fake.lease().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_never_reached_times_out_and_scales_back_down() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_operator(Operator::NeverAvailable);
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let mut request = request(Workload::For(Duration::from_secs(1)));
    request.ready_timeout = Duration::from_millis(500);
    let record = setup.run(&request).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    let error = record.error.unwrap();
    assert!(error.contains("did not become ready") && error.contains("Available=False"), "{error}");
    prometheus_is_scaled_down(&setup.fake);
    assert!(setup.fake.lease().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_prometheus_resource_is_a_clear_error_and_nothing_changes() {
    let setup =
        Setup::new(FakeApiServer::new("monitoring", "greenflow").without_prometheus(), Generation::PerQueue, 0).await;
    let err = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap_err().to_string();
    assert!(err.contains("greenflow cluster install"), "{err}");
    assert!(setup.fake.writes().is_empty(), "{:?}", setup.methods());
    assert!(setup.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_refused_because_prometheus_already_runs_leaves_it_running() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_running_prometheus();
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    assert!(record.error.as_deref().unwrap_or_default().contains("already runs"), "{record:?}");
    // Another run's Prometheus: not patched, not scaled down, and the lock is released.
    assert!(setup.fake.writes().iter().all(|w| w.method != "PATCH"), "{:?}", setup.methods());
    assert_eq!(setup.fake.prometheus().unwrap()["spec"]["replicas"], 1);
    assert!(setup.fake.prometheus_pod().is_some(), "its pod still runs");
    assert!(setup.fake.lease().is_none(), "the lock is released: {:?}", setup.fake.lease());
    assert!(!said(&setup).contains("scaling Prometheus down"), "{}", said(&setup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_run_refuses_the_run() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_lease(
        "greenflow-experiment",
        "20261125T100000Z-beef@lab-server",
        Duration::from_secs(10),
        60,
    );
    // A live holder renews (every third of its lease, as greenflow does).
    let holder = {
        let fake = fake.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                fake.renew_lease_as("20261125T100000Z-beef@lab-server");
            }
        })
    };
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let began = std::time::Instant::now();
    let err = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap_err().to_string();
    holder.abort();
    assert!(began.elapsed() < Duration::from_secs(10), "a renewed lock is refused at its first renewal");
    assert!(err.contains("20261125T100000Z-beef@lab-server") && err.contains("runs recover"), "{err}");
    assert!(setup.fake.writes().iter().all(|w| w.method != "PATCH"), "{:?}", setup.methods());
    assert_eq!(setup.fake.lease().unwrap()["spec"]["holderIdentity"], "20261125T100000Z-beef@lab-server");
    assert!(setup.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_taken_over() {
    // A 1 s lease whose holder died: taken over once this machine saw it unrenewed for 1 s.
    let fake = FakeApiServer::new("monitoring", "greenflow").with_lease(
        "greenflow-experiment",
        "20261125T100000Z-dead@crashed",
        Duration::from_secs(120),
        1,
    );
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Complete, "{record:?}");
    assert!(setup.methods().iter().any(|w| w == "PUT greenflow-experiment"), "{:?}", setup.methods());
    assert!(setup.fake.lease().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_drains_and_scales_down_a_run_left_running() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    // Replay the state a killed greenflow leaves: the resource still up with the run's labels, a running record.
    let mut backend = KubeBackend::new(setup.fake.cluster());
    use greenflow_runs::ClusterBackend;
    backend.scale_up(&record.labels, Duration::from_secs(5), &|_| {}).await.unwrap();
    drop(backend);
    let mut orphan = record.clone();
    orphan.status = RunStatus::Running;
    orphan.end = None;
    orphan.drain = None;
    let (_tx, interrupts) = Interrupts::manual();
    let mut ctx = RunContext {
        sink: SinkClient::new(setup.vm.base.clone(), None),
        writer: None,
        storage: None,
        store: RunStore::new(setup.runs.path()),
        reporter: &setup.lines,
        interrupts,
    };
    let mut fresh = KubeBackend::new(setup.fake.cluster());
    let recovered =
        lifecycle::recover(&mut fresh, &mut ctx, &request(Workload::For(Duration::ZERO)), orphan).await.unwrap();
    assert_eq!(recovered.status, RunStatus::Complete, "{recovered:?}");
    prometheus_is_scaled_down(&setup.fake);
    assert!(setup.fake.lease().is_none());
    let _ = setup.queue.sent_ms.load(Ordering::SeqCst);
}

#[tokio::test]
async fn a_drain_stuck_on_a_full_disk_names_the_disk() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 0).await;
    // VictoriaMetrics with a free-space floor above any disk is read-only from the start, as on a full disk: it
    // publishes vm_storage_is_read_only 1 for its data path.
    let full = Vm::start_with(&["-storage.minFreeDiskSpaceBytes=1000000000000000"]).await;
    let stall = {
        let queue = Arc::clone(&setup.queue);
        tokio::spawn(async move {
            // Past the first sample, writes stop getting through.
            while queue.sent_ms.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            queue.stalled.store(true, Ordering::SeqCst);
        })
    };
    let mut req = request(Workload::For(Duration::from_secs(2)));
    req.drain_timeout = Duration::from_secs(3);
    let record = setup.run_with_storage(&req, Some(&full)).await.unwrap();
    stall.await.unwrap();
    assert_eq!(record.status, RunStatus::NotDrained, "{record:?}");
    let detail = record.drain.as_ref().and_then(|d| d.detail.clone()).unwrap_or_default();
    assert!(detail.contains("VictoriaMetrics is read-only: the disk under `"), "{detail}");
    assert!(detail.contains(&format!("greenflow runs recover {}", record.id)), "{detail}");
    let lines = setup.lines.0.lock().unwrap().join("\n");
    assert!(lines.contains("VictoriaMetrics is read-only"), "the wait said why:\n{lines}");
    assert!(record.cluster_left_running, "Prometheus keeps its queue for recover");
}

/// The lines the lifecycle reported so far.
fn said(setup: &Setup) -> String {
    setup.lines.0.lock().unwrap().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_runs_each_get_their_own_pod_and_labels() {
    let timing = Timing {
        pod_ready_after: Duration::from_millis(300),
        pod_unready_after: Duration::from_millis(500),
        pod_gone_after: Duration::from_millis(1500),
        reload_after: Duration::from_millis(200),
    };
    let setup =
        Setup::new(FakeApiServer::new("monitoring", "greenflow").with_timing(timing), Generation::PerQueue, 0).await;
    let first = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert!(setup.fake.prometheus_pod().is_none(), "the first run returned before its pod was gone");
    let second = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    for record in [&first, &second] {
        assert_eq!(record.status, RunStatus::Complete, "{record:?}\n{}", said(&setup));
    }
    // Every sample of each run carries that run's id: none of the second run was sent with the first one's labels.
    for record in [&first, &second] {
        let series = query(&setup.vm, &format!(r#"node_load1{{greenflow_run="{}"}}"#, record.id)).await;
        assert_eq!(series.len(), 1, "{series:?}");
    }
    assert!(setup.fake.lease().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_while_the_previous_pod_terminates_waits_for_it() {
    let timing = Timing {
        pod_gone_after: Duration::from_secs(2),
        pod_unready_after: Duration::from_secs(1),
        ..Timing::default()
    };
    let fake = FakeApiServer::new("monitoring", "greenflow").with_timing(timing).with_running_prometheus();
    // The previous run's scale-down, just sent: its pod still runs, is ready, and counts as available.
    fake.cluster().scale(0, &BTreeMap::new(), &[]).await.unwrap();
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Complete, "{record:?}\n{}", said(&setup));
    assert!(said(&setup).contains("still stopping"), "{}", said(&setup));
}

/// A scale-up whose pod turns ready `ready_after` the patch, under a Lease of `lease`; a rival starts taking the lock
/// at `rival_at` (when an unrenewed lock would have lapsed). Only the renewal timer keeps the lock meanwhile: the run
/// completes, the rival is refused, and the Lease was renewed at least `renewals` times.
async fn slow_scale_up_keeps_the_lock(ready_after: Duration, lease: Duration, rival_at: Duration, renewals: usize) {
    let timing = Timing { pod_ready_after: ready_after, ..Timing::default() };
    let setup =
        Setup::new(FakeApiServer::new("monitoring", "greenflow").with_timing(timing), Generation::PerQueue, 0).await;
    let rival = {
        let fake = setup.fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(rival_at).await;
            let cluster = fake.cluster().with_lease_duration(lease);
            cluster.acquire_lease_waiting("20261125T100000Z-rival@other", &|_| {}).await
        })
    };
    let cluster = setup.fake.cluster().with_lease_duration(lease);
    let (_tx, interrupts) = Interrupts::manual();
    let mut req = request(Workload::For(Duration::from_secs(1)));
    req.ready_timeout = ready_after * 2;
    let record = setup.run_with(&req, None, cluster, interrupts).await.unwrap();
    assert_eq!(record.status, RunStatus::Complete, "{record:?}\n{}", said(&setup));
    let rival = rival.await.unwrap();
    assert!(
        matches!(rival, Err(greenflow_cluster::ClusterError::LockHeld { .. })),
        "the rival took the lock: {rival:?}"
    );
    let renewed = setup.methods().iter().filter(|m| *m == "PUT greenflow-experiment").count();
    assert!(renewed >= renewals, "renewed {renewed} times: {:?}", setup.methods());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_scale_up_keeps_the_lock_renewed_throughout() {
    // Readiness 4 s after the patch with a 1 s lease.
    slow_scale_up_keeps_the_lock(Duration::from_secs(4), Duration::from_secs(1), Duration::from_millis(1500), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_after_90_s_with_a_60_s_lease_keeps_the_lock() {
    // The case as a real cluster gives it, at real scale: a node pulling Prometheus' image for 90 s while the Lease
    // lasts 60 s (renewed every 20 s); the rival starts watching at 65 s.
    slow_scale_up_keeps_the_lock(Duration::from_secs(90), Duration::from_secs(60), Duration::from_secs(65), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_run_and_leaves_prometheus_to_its_new_holder() {
    let setup = Setup::new(FakeApiServer::new("monitoring", "greenflow"), Generation::PerQueue, 0).await;
    let thief = {
        let fake = setup.fake.clone();
        tokio::spawn(async move {
            while fake.running_labels().and_then(|l| l.get("greenflow_run").cloned()).is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(800)).await;
            fake.renew_lease_as("20261125T100000Z-thief@other");
        })
    };
    let cluster = setup.fake.cluster().with_lease_duration(Duration::from_secs(1));
    let (_tx, interrupts) = Interrupts::manual();
    let began = std::time::Instant::now();
    let record =
        setup.run_with(&request(Workload::For(Duration::from_secs(30))), None, cluster, interrupts).await.unwrap();
    thief.await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(20), "the run went on without its lock");
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    assert!(
        record
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("lost the experiment lock to 20261125T100000Z-thief@other"),
        "{record:?}"
    );
    assert_eq!(setup.fake.prometheus().unwrap()["spec"]["replicas"], 1, "scaled down someone else's run");
    assert_eq!(setup.fake.lease().unwrap()["spec"]["holderIdentity"], "20261125T100000Z-thief@other");
    // What was scraped before the stop still drained: the record says so and the sink holds it.
    let drain = record.drain.as_ref().unwrap();
    assert_eq!(drain.outcome, DrainOutcome::Drained, "{drain:?}");
    assert!(record.samples.unwrap_or(0) > 0, "{record:?}");
    let stored = query(&setup.vm, &format!(r#"node_load1{{greenflow_run="{}"}}"#, record.id)).await;
    assert!(!stored.is_empty(), "the run's samples are in the sink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_readiness_wait_scales_back_down_at_once() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_operator(Operator::NeverAvailable);
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let (tx, interrupts) = Interrupts::manual();
    let fake = setup.fake.clone();
    // Ctrl-C half a second into the readiness wait, once the scale-up patch is in.
    tokio::spawn(async move {
        while fake.prometheus().is_none_or(|p| p["spec"]["replicas"] != 1) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send_replace(1);
    });
    let mut req = request(Workload::For(Duration::from_secs(1)));
    req.ready_timeout = Duration::from_secs(60);
    let began = std::time::Instant::now();
    let record = setup.run_with(&req, None, setup.fake.cluster(), interrupts).await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(10), "Ctrl-C waited for the readiness timeout");
    assert_eq!(record.status, RunStatus::NotDrained, "{record:?}");
    prometheus_is_scaled_down(&setup.fake);
    assert!(setup.fake.lease().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scale_down_keeps_the_lock_and_says_how_to_finish() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_failing_scale_down();
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    // The run itself drained; Prometheus still runs, so the lock stays for recover (or lapses).
    assert_eq!(record.status, RunStatus::Complete, "{record:?}");
    assert!(record.cluster_left_running, "{record:?}");
    assert_eq!(setup.fake.prometheus().unwrap()["spec"]["replicas"], 1);
    let lease = setup.fake.lease().expect("the lock is kept");
    assert!(lease["spec"]["holderIdentity"].as_str().unwrap().starts_with(record.id.as_str()), "{lease}");
    let said = said(&setup);
    assert!(said.contains("etcdserver: request timed out"), "{said}");
    assert!(said.contains(&format!("greenflow runs recover {}", record.id)), "{said}");
    assert_eq!(setup.stored(), vec![record]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_waiting_for_a_lapsing_lock_stops_at_once_and_changes_nothing() {
    // A holder that stopped renewing a 60 s lease: the run would watch it for a minute before taking over.
    let fake = FakeApiServer::new("monitoring", "greenflow").with_lease(
        "greenflow-experiment",
        "20261125T100000Z-beef@lab-server",
        Duration::from_secs(1),
        60,
    );
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let (tx, interrupts) = Interrupts::manual();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.send_replace(1);
    });
    let began = std::time::Instant::now();
    let err = setup
        .run_with(&request(Workload::For(Duration::from_secs(1))), None, setup.fake.cluster(), interrupts)
        .await
        .unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(10), "Ctrl-C waited for the lock");
    assert!(matches!(err, RunError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert!(setup.fake.writes().iter().all(|w| w.method != "PATCH"), "{:?}", setup.methods());
    assert_eq!(setup.fake.lease().unwrap()["spec"]["holderIdentity"], "20261125T100000Z-beef@lab-server");
    assert!(setup.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_the_pod_terminates_stops_the_wait_and_leaves_the_run_for_recover() {
    let timing = Timing { pod_gone_after: Duration::from_secs(60), ..Timing::default() };
    let setup =
        Setup::new(FakeApiServer::new("monitoring", "greenflow").with_timing(timing), Generation::PerQueue, 0).await;
    let (tx, interrupts) = Interrupts::manual();
    let fake = setup.fake.clone();
    // The first Ctrl-C comes once the scale-down patch is in.
    tokio::spawn(async move {
        let mut was_up = false;
        loop {
            let replicas = fake.prometheus().map(|p| p["spec"]["replicas"].as_i64().unwrap_or(0)).unwrap_or(0);
            was_up |= replicas == 1;
            if was_up && replicas == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                tx.send_replace(1);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let began = std::time::Instant::now();
    let record = setup
        .run_with(&request(Workload::For(Duration::from_secs(1))), None, setup.fake.cluster(), interrupts)
        .await
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(30), "Ctrl-C waited for the pod to be gone");
    assert_eq!(record.status, RunStatus::Complete, "the run itself drained: {record:?}");
    assert!(record.cluster_left_running, "{record:?}");
    assert!(said(&setup).contains(&format!("greenflow runs recover {}", record.id)), "{}", said(&setup));
    assert!(setup.fake.lease().is_some(), "the lock stays held until it lapses or recover releases it");
    assert_eq!(setup.stored(), vec![record]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_shards_the_drain_waits_for_each_queue() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_shards(2);
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    // Shard 1's queue runs 3 s behind shard 0's: the run is drained only once it too has sent past the end.
    let queue = Arc::clone(&setup.queue);
    let _ = setup.fake.clone().with_pod_metrics(move |pod| {
        let text = metrics_text(&queue, Generation::PerQueue);
        if !pod.contains("-shard-1-") {
            return text;
        }
        let sent = queue.sent_ms.load(Ordering::SeqCst) as f64 / 1000.0;
        let behind = format!("{}", (sent - 3.0).max(0.0));
        text.replace(&format!(" {sent}\n"), &format!(" {behind}\n"))
    });
    let record = setup.run(&request(Workload::For(Duration::from_secs(1)))).await.unwrap();
    assert_eq!(record.status, RunStatus::Complete, "{record:?}\n{}", said(&setup));
    let drain = record.drain.unwrap();
    assert!(drain.seconds >= 2.5, "drained before shard 1's queue caught up: {drain:?}");
    let reads: std::collections::BTreeSet<String> = setup
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/proxy/metrics"))
        .map(|r| r.path.split("/pods/").nth(1).unwrap_or_default().split(':').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        reads.into_iter().collect::<Vec<_>>(),
        [
            "prometheus-greenflow-kube-prometheus-prometheus-0",
            "prometheus-greenflow-kube-prometheus-prometheus-shard-1-0"
        ]
    );
}

/// What a refused key makes `tailscale up` and containerboot print (`cmd/tailscale/cli/up.go`: `backend error:`;
/// `cmd/containerboot/main.go`: `failed to auth tailscale`); the key text is control's.
const REFUSED_KEY_LOG: &str = "boot: 2026/12/02 06:00:00 Starting tailscaled\nboot: 2026/12/02 06:00:01 Waiting for tailscaled socket\nbackend error: invalid key: API key kTEST1CNTRL not valid\nboot: 2026/12/02 06:00:02 failed to auth tailscale: failed to auth tailscale: tailscale up failed: exit status 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tailscale_auth_key_is_named_when_prometheus_never_gets_ready() {
    let fake = FakeApiServer::new("monitoring", "greenflow").with_sidecar(Sidecar::CrashLoops(REFUSED_KEY_LOG.into()));
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    let mut request = request(Workload::For(Duration::from_secs(1)));
    request.ready_timeout = Duration::from_secs(1);
    let record = setup.run(&request).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    let error = record.error.unwrap();
    assert!(error.contains("did not become ready"), "{error}");
    assert!(error.contains("likely cause: the Tailscale sidecar's auth key was refused"), "{error}");
    assert!(error.contains("TS_AUTHKEY"), "{error}");
    prometheus_is_scaled_down(&setup.fake);
    assert!(setup.fake.lease().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_cannot_reach_the_sink_is_named_when_no_sample_arrives() {
    // Printed by the real Prometheus 3.5.3 agent writing through a proxy that refuses.
    let log = r#"time=2026-12-02T06:08:12.120Z level=WARN source=queue_manager.go:2027 msg="Failed to send batch, retrying" component=remote remote_name=greenflow-sink url=https://laptop.tail1234.ts.net/vm/api/v1/write err="Post \"https://laptop.tail1234.ts.net/vm/api/v1/write\": proxyconnect tcp: dial tcp 127.0.0.1:1055: connect: connection refused""#;
    let fake = FakeApiServer::new("monitoring", "greenflow")
        .with_sidecar(Sidecar::Joins(
            "boot: 2026/12/02 06:00:03 Startup complete, waiting for shutdown signal\n".into(),
        ))
        .with_prometheus_log(log);
    let setup = Setup::new(fake, Generation::PerQueue, 0).await;
    setup.queue.stalled.store(true, Ordering::SeqCst);
    let mut request = request(Workload::For(Duration::from_secs(1)));
    request.first_sample_timeout = Duration::from_secs(2);
    let record = setup.run(&request).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    let error = record.error.unwrap();
    assert!(error.contains("no sample of the run reached the sink"), "{error}");
    assert!(error.contains("likely cause: the Tailscale sidecar's proxy cannot reach the sink"), "{error}");
    assert!(error.contains("127.0.0.1:1055"), "{error}");
    prometheus_is_scaled_down(&setup.fake);
    // The diagnosis read the pod's logs: the printed Role allows that too.
    assert!(setup.fake.requests().iter().any(|r| r.path.ends_with("/log")), "the logs were read");
    setup.assert_rbac_allows_every_request();
}
