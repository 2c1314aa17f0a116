//! A small stateful fake of the Kubernetes API server, for tests of this crate and of its users (enable the
//! `testing` feature in `[dev-dependencies]`).
//!
//! It follows kube-rs's mock pattern — a `tower_test::mock::pair` behind a real [`kube::Client`] — but instead of a
//! script of expected calls it keeps objects and answers like an API server: plain REST on any collection (create,
//! get, list with equality label selectors, replace with resourceVersion checks, JSON merge patch, delete with
//! preconditions), `/version`, and the pod and service proxies' `/metrics`. Every request is recorded for
//! assertions.
//!
//! # The cluster's moving parts, rule by rule
//!
//! Each rule copies one upstream behaviour, including the awkward ones; [`Timing`] sets how long each step takes.
//!
//! 1. **Names** (kube-prometheus-stack `templates/_helpers.tpl`, `kube-prometheus-stack.fullname`): the release
//!    name, or `<release>-kube-prometheus-stack` cut to 26 characters with a trailing `-` trimmed; the Prometheus
//!    resource is `<fullname>-prometheus` ([`prometheus_name`]). The operator's StatefulSet is
//!    `prometheus-<resource>` for shard 0 and `prometheus-<resource>-shard-<n>` for the others, with pods
//!    `<statefulset>-<ordinal>` for each of `spec.replicas` (prometheus-operator `pkg/prometheus/common.go`,
//!    `prometheusNameByShard`), labelled `app.kubernetes.io/name=prometheus`, `operator.prometheus.io/name`,
//!    `operator.prometheus.io/shard`, `prometheus` (`pkg/prometheus/server/operator.go`, `makeSelectorLabels`).
//! 2. **Scale-up takes time** (kubelet: schedule, pull, start; the operator's readiness probe on `/-/ready`,
//!    `pkg/prometheus/promcfg.go`, `BuildProbes`): a patch to `replicas: 1` creates the pod at once, `Running` but
//!    not ready; it turns ready [`Timing::pod_ready_after`] later. A pod of the same name that is still terminating
//!    must be gone first (the StatefulSet controller reuses the ordinal name).
//! 3. **Scale-down is not instant** (kubelet termination: SIGTERM, then the grace period; Prometheus flushes and
//!    stops; readiness fails after 3 probes 5 s apart): the pod gets a `deletionTimestamp` at once, stays `Ready`
//!    for [`Timing::pod_unready_after`] and exists until [`Timing::pod_gone_after`].
//! 4. **The operator's status counts terminating pods** (`pkg/prometheus/operator.go`, `StatusReporter.Process`;
//!    `pkg/operator/statefulset_reporter.go`, `ReadyPods`: `Running` and `PodReady`, terminating included):
//!    `availableReplicas` is the number of such pods; `Available` is `True` when they are at least `spec.replicas`
//!    (so at once for `replicas: 0`, and for `replicas: 1` while the previous run's pod is dying); both conditions
//!    carry the generation the operator's cache holds, which lags a patch by [`FakeApiServer::with_stale_reads`]
//!    reads.
//! 5. **A label change is a config reload, not a new pod** (the operator's input hash is an annotation on the
//!    StatefulSet, not on the pod template: `pkg/operator/factory.go`, `WithInputHashAnnotation`; the
//!    config-reloader sidecar reloads the mounted config): the running Prometheus uses a change of
//!    `spec.externalLabels` only [`Timing::reload_after`] after the patch ([`FakeApiServer::running_labels`]).
//! 7. **Server-side apply owns fields** (Kubernetes `staging/src/k8s.io/apimachinery/pkg/util/managedfields`;
//!    "Conflicts" in the server-side apply documentation): a merge patch with `fieldManager` makes that manager the
//!    owner of `spec.replicas`; an apply patch (`application/apply-patch+yaml`) from another manager that sets it to
//!    another value fails with 409 `Apply failed with 1 conflict: conflict with "<owner>"...: .spec.replicas`
//!    unless `force=true`, which takes the field over. The same value is shared, not a conflict. (Helm 4 upgrades
//!    with server-side apply and without forcing conflicts.)
//! 6. **The service proxy uses ready endpoints only** (the endpoints controller leaves out terminating and unready
//!    pods): 503 "no endpoints available" otherwise. **The pod proxy reaches the pod itself** while its container
//!    runs, ready or not, terminating or not.
//! 8. **A native sidecar gates the pod, and its logs are read as the kubelet serves them** ([`Sidecar`]): an init
//!    container with `restartPolicy: Always` must be started (its startup probe passed) before the main containers
//!    start, so while it is not, the pod is `Pending`, `prometheus` waits in `PodInitializing` and the pod is never
//!    ready; a sidecar that keeps exiting is restarted with back-off (`CrashLoopBackOff`, `restartCount`,
//!    `lastState.terminated`) (Kubernetes `pkg/kubelet/kuberuntime/kuberuntime_container.go` and the "Sidecar
//!    containers" documentation). `GET .../pods/<pod>/log?container=<c>` answers as `validateContainerLogStatus` in
//!    `pkg/kubelet/kubelet_pods.go` decides: a running container's log; a waiting one's last terminated instance
//!    (so a crash-looping sidecar's last words); a waiting container with no previous instance is a 400 "container
//!    \"c\" in pod \"p\" is waiting to start: image can't be pulled" (or `trying and failing to pull image`, or the
//!    reason); an unknown container is a 400 "container c is not valid for pod p". `tailLines` keeps the last lines.
//! 9. **Real clients find their way** ([`FakeApiServer::serve_http`]): the legacy discovery documents of the
//!    resources served (`staging/src/k8s.io/apiserver/pkg/endpoints/discovery`); an apply patch of an absent object
//!    creates it, owned by its field manager (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`,
//!    `applyPatcher.createNewObject`); `watch=true` answers the current objects as `ADDED` events and the bookmark
//!    annotated `k8s.io/initial-events-end` when asked to `sendInitialEvents` (a watch list, as Helm 4's status
//!    watcher asks, `staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go`), else the objects changed since
//!    the given `resourceVersion` as `MODIFIED` events, then closes (a watch the server ended: clients watch again,
//!    `staging/src/k8s.io/client-go/tools/cache/reflector.go`);
//!    `/openapi/v2` is a document with no definitions (an empty protobuf message) and `/openapi/v3` is absent, as on
//!    a server whose resources publish no schema: helm's client-side validation skips kinds it has no schema for
//!    (`staging/src/k8s.io/kubectl/pkg/validation/schema.go`, `LookupResource` nil) after falling back from v3 to v2
//!    (`staging/src/k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go`); protobuf bodies (helm's release
//!    Secrets) are read as the API server reads them (`testing/protobuf.rs`).
//!
//! ```no_run
//! # async fn doc() {
//! use greenflow_cluster::testing::{FakeApiServer, Operator};
//! let fake = FakeApiServer::new("monitoring", "greenflow")
//!     .with_operator(Operator::Ready)
//!     .with_metrics(|| "prometheus_remote_storage_samples_pending{remote_name=\"greenflow-sink\"} 0\n".into());
//! let cluster = fake.cluster(); // a KubeCluster on a client whose requests the fake answers
//! cluster.acquire_lease("run-1@host").await.unwrap();
//! assert_eq!(fake.lease().unwrap()["spec"]["holderIdentity"], "run-1@host");
//! assert!(fake.requests().iter().any(|r| r.method == "POST" && r.path.ends_with("/leases")));
//! # }
//! ```

mod protobuf;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::kube_cluster::{ClusterNames, KubeCluster};
use crate::prometheus::{PROMETHEUS_APP_LABEL, PROMETHEUS_POD_PORT, PROMETHEUS_PORT_NAME};

/// How long the fake cluster's moving parts take (rules 2, 3 and 5 of the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From the patch to `replicas: 1` (or from the previous pod's end) to the new pod's `Ready`.
    pub pod_ready_after: Duration,
    /// From the patch to `replicas: 0` to the terminating pod's readiness failing.
    pub pod_unready_after: Duration,
    /// From the patch to `replicas: 0` to the pod being gone.
    pub pod_gone_after: Duration,
    /// From a patch of `spec.externalLabels` to the running Prometheus using them.
    pub reload_after: Duration,
}

impl Default for Timing {
    /// Short, for fast tests: ready 50 ms after scale-up, unready 50 ms and gone 150 ms after scale-down, labels
    /// reloaded 20 ms after the patch.
    fn default() -> Self {
        Self {
            pod_ready_after: Duration::from_millis(50),
            pod_unready_after: Duration::from_millis(50),
            pod_gone_after: Duration::from_millis(150),
            reload_after: Duration::from_millis(20),
        }
    }
}

/// How the Prometheus pod's Tailscale sidecar behaves (rule 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sidecar {
    /// It joins the tailnet: running and started; these are its log lines.
    Joins(String),
    /// It exits at every start (an auth key refused, say) and is restarted with back-off; these are the log lines
    /// of its last run.
    CrashLoops(String),
    /// It runs but never has a tailnet address (its startup probe fails); these are its log lines.
    NeverJoins(String),
    /// Its image cannot be pulled; this is the kubelet's message.
    ImagePull(String),
}

/// The Prometheus pod's life (rules 2 and 3).
#[derive(Debug, Clone, Copy)]
struct PodLife {
    created: Instant,
    ready_at: Instant,
    deleted: Option<Instant>,
}

/// How the simulated Prometheus operator treats the Prometheus resource after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Reconciles and becomes `Available` with all replicas (one read after the change).
    Ready,
    /// Reconciles (`Reconciled=True`) but the pods never become ready (`Available=False`, 0 available replicas).
    NeverAvailable,
    /// Does nothing: status stays as it was.
    Stopped,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (empty when none), undecoded.
    pub query: String,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// The body as text (empty when none).
    pub body: String,
}

impl RecordedRequest {
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Whether this request could change anything (anything but `GET`).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

type MetricsFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

struct State {
    namespace: String,
    release: String,
    /// Collection path (e.g. `/api/v1/namespaces/monitoring/secrets`) -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    operator: Operator,
    /// Reads of a changed Prometheus resource still to answer with the old status.
    stale_reads: u32,
    stale_reads_after_change: u32,
    metrics: MetricsFn,
    requests: Vec<RecordedRequest>,
    next_version: u64,
    steal_lease_for: Option<String>,
    /// The request being answered is an apply patch (`application/apply-patch+yaml`).
    applying: bool,
    kubernetes_version: String,
    timing: Timing,
    /// The pods of the Prometheus resource, by name, while they exist.
    pods: BTreeMap<String, PodLife>,
    /// Pods a scale-up wants whose predecessor of the same name still terminates.
    pods_wanted: std::collections::BTreeSet<String>,
    /// The field manager that owns the Prometheus resource's `spec.replicas` (rule 7).
    replicas_owner: Option<String>,
    /// `spec.externalLabels` after each change, with when it was made (rule 5).
    label_history: Vec<(Instant, BTreeMap<String, String>)>,
    /// The Tailscale sidecar of the pods, if they have one (rule 8).
    sidecar: Option<Sidecar>,
    /// The `prometheus` container's log.
    prometheus_log: String,
    /// A fault injected by a test: merge patches to `replicas: 0` answer 503 (an API server that lost etcd).
    failing_scale_down: bool,
}

/// The fake API server. Cheap to clone (shared state); build it, then take [`FakeApiServer::client`] or
/// [`FakeApiServer::cluster`] inside a tokio runtime.
#[derive(Clone)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer").finish_non_exhaustive()
    }
}

/// The name the chart gives the Prometheus resource (and its Service) for `release` (rule 1).
pub fn prometheus_name(release: &str) -> String {
    let full = if release.contains("kube-prometheus-stack") {
        release.to_owned()
    } else {
        format!("{release}-kube-prometheus-stack")
    };
    let cut: String = full.chars().take(26).collect();
    format!("{}-prometheus", cut.trim_end_matches('-'))
}

/// The pod the operator's StatefulSet gives the Prometheus resource `name` (rule 1).
pub fn prometheus_pod_name(name: &str) -> String {
    format!("prometheus-{name}-0")
}

/// An RFC 3339 time with microseconds, as Kubernetes writes `MicroTime`.
pub fn micro_time(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(at.microsecond() * 1000).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

impl FakeApiServer {
    /// A cluster with the namespace and the release installed: a Prometheus resource with 0 replicas, reconciled
    /// and available, the chart's labels, version `v3.7.1`; an operator that makes it ready ([`Operator::Ready`]);
    /// no Lease; `/metrics` answering an empty text.
    pub fn new(namespace: &str, release: &str) -> Self {
        let state = State {
            namespace: namespace.to_owned(),
            release: release.to_owned(),
            objects: BTreeMap::new(),
            operator: Operator::Ready,
            stale_reads: 0,
            stale_reads_after_change: 1,
            metrics: Arc::new(|_: &str| String::new()),
            requests: Vec::new(),
            next_version: 100,
            steal_lease_for: None,
            applying: false,
            kubernetes_version: "v1.33.1".into(),
            timing: Timing::default(),
            pods: BTreeMap::new(),
            pods_wanted: Default::default(),
            replicas_owner: Some("helm".into()),
            label_history: vec![(Instant::now(), BTreeMap::from([("greenflow_deployment".into(), "default".into())]))],
            sidecar: None,
            prometheus_log: String::new(),
            failing_scale_down: false,
        };
        let fake = Self { state: Arc::new(Mutex::new(state)) };
        {
            let mut state = fake.lock();
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            state.insert("/api/v1/namespaces".into(), ns);
            let prometheus = default_prometheus(namespace, release);
            let collection = state.prometheus_collection();
            state.insert(collection, prometheus);
        }
        fake
    }

    /// Without the namespace (nothing installed yet; the Prometheus resource is gone too).
    pub fn without_namespace(self) -> Self {
        {
            let mut state = self.lock();
            let namespace = state.namespace.clone();
            state.objects.entry("/api/v1/namespaces".into()).or_default().remove(&namespace);
        }
        self.without_prometheus()
    }

    /// Without the Prometheus resource (the chart is not installed).
    pub fn without_prometheus(self) -> Self {
        {
            let mut state = self.lock();
            let collection = state.prometheus_collection();
            state.objects.remove(&collection);
        }
        self
    }

    /// Sets how the simulated operator reacts to changes of the Prometheus resource.
    pub fn with_operator(self, operator: Operator) -> Self {
        self.lock().operator = operator;
        self
    }

    /// Sets how long the pods take to come, go and reload (rules 2, 3 and 5).
    pub fn with_timing(self, timing: Timing) -> Self {
        self.lock().timing = timing;
        self
    }

    /// With the Prometheus resource scaled up (`replicas: 1`) and its pod running and ready, as a run left it.
    pub fn with_running_prometheus(self) -> Self {
        {
            let mut state = self.lock();
            let collection = state.prometheus_collection();
            if let Some(object) = state.objects.get_mut(&collection).and_then(|c| c.values_mut().next()) {
                object["spec"]["replicas"] = json!(1);
            }
            let long_ago = Instant::now() - Duration::from_secs(3600);
            let name = prometheus_pod_name(&state.resource_name());
            state.pods.insert(name, PodLife { created: long_ago, ready_at: long_ago, deleted: None });
            state.refresh(Instant::now());
            state.operator_tick();
        }
        self
    }

    /// The external labels the running Prometheus uses (rule 5), while its pod runs and scrapes (not once it has
    /// had SIGTERM); `None` when there is no such pod.
    pub fn running_labels(&self) -> Option<BTreeMap<String, String>> {
        let mut state = self.lock();
        let now = Instant::now();
        state.refresh(now);
        let pod = *state.pods.values().next()?;
        if now < pod.created || pod.deleted.is_some() {
            return None;
        }
        let reload = state.timing.reload_after;
        state.label_history.iter().rev().find(|(at, _)| *at + reload <= now).map(|(_, labels)| labels.clone())
    }

    /// The Prometheus pod object, if there is one.
    pub fn prometheus_pod(&self) -> Option<Value> {
        let mut state = self.lock();
        state.refresh(Instant::now());
        let collection = state.pod_collection();
        state.objects.get(&collection).and_then(|c| c.values().next()).cloned()
    }

    /// Sets how many reads of a changed Prometheus resource still show the old status (default 1).
    pub fn with_stale_reads(self, reads: u32) -> Self {
        self.lock().stale_reads_after_change = reads;
        self
    }

    /// Answers the service proxy's `/metrics` with `metrics()` (called on each request).
    pub fn with_metrics(self, metrics: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.set_metrics(metrics);
        self
    }

    /// Like [`FakeApiServer::with_metrics`], on a running fake.
    pub fn set_metrics(&self, metrics: impl Fn() -> String + Send + Sync + 'static) {
        self.lock().metrics = Arc::new(move |_: &str| metrics());
    }

    /// Answers each pod's `/metrics` with `metrics(pod name)`: one queue per pod.
    pub fn with_pod_metrics(self, metrics: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.lock().metrics = Arc::new(metrics);
        self
    }

    /// With a Tailscale sidecar in Prometheus' pods that behaves as `sidecar` (rule 8).
    pub fn with_sidecar(self, sidecar: Sidecar) -> Self {
        self.lock().sidecar = Some(sidecar);
        self
    }

    /// With scale-down failing: every merge patch to `replicas: 0` answers 503 as an API server whose etcd does
    /// not answer does ("etcdserver: request timed out"). A fault for tests, not a rule.
    pub fn with_failing_scale_down(self) -> Self {
        self.lock().failing_scale_down = true;
        self
    }

    /// With these lines as the `prometheus` container's log.
    pub fn with_prometheus_log(self, log: &str) -> Self {
        self.lock().prometheus_log = log.to_owned();
        self
    }

    /// With `spec.shards` set on the Prometheus resource (one StatefulSet per shard).
    pub fn with_shards(self, shards: i64) -> Self {
        {
            let mut state = self.lock();
            let collection = state.prometheus_collection();
            if let Some(object) = state.objects.get_mut(&collection).and_then(|c| c.values_mut().next()) {
                object["spec"]["shards"] = json!(shards);
            }
        }
        self
    }

    /// With the experiment Lease `name` held by `holder`, last renewed `renewed_ago` ago, for `duration_seconds`.
    pub fn with_lease(self, name: &str, holder: &str, renewed_ago: Duration, duration_seconds: i32) -> Self {
        let renewed = OffsetDateTime::now_utc() - renewed_ago;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration_seconds,
                "acquireTime": micro_time(renewed - Duration::from_secs(300)),
                "renewTime": micro_time(renewed),
                "leaseTransitions": 2,
            }
        });
        {
            let mut state = self.lock();
            let collection = state.lease_collection();
            state.insert(collection, lease);
        }
        self
    }

    /// With an object in a collection (e.g. a Secret under `/api/v1/namespaces/monitoring/secrets`).
    pub fn with_object(self, collection: &str, object: Value) -> Self {
        self.lock().insert(collection.to_owned(), object);
        self
    }

    /// Renews the Lease as its holder would (a new `renewTime` and resourceVersion), or hands it to `holder`.
    pub fn renew_lease_as(&self, holder: &str) {
        let mut state = self.lock();
        let collection = state.lease_collection();
        if let Some(mut lease) = state.objects.get(&collection).and_then(|c| c.values().next()).cloned() {
            if lease["spec"]["holderIdentity"] != holder {
                lease["spec"]["acquireTime"] = json!(micro_time(OffsetDateTime::now_utc()));
            }
            lease["spec"]["holderIdentity"] = json!(holder);
            lease["spec"]["renewTime"] = json!(micro_time(OffsetDateTime::now_utc()));
            state.insert(collection, lease);
        }
    }

    /// The next `PUT` of the Lease finds it taken by `holder` just before (another run won the race).
    pub fn steal_lease_before_next_put(&self, holder: &str) {
        self.lock().steal_lease_for = Some(holder.to_owned());
    }

    /// A client whose requests this fake answers (spawns the answering task: call inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                let response = fake.answer(&parts, &body);
                send.send_response(response);
            }
        });
        let namespace = self.lock().namespace.clone();
        kube::Client::new(service, namespace)
    }

    /// Serves this fake over plain HTTP on a free loopback port, for real clients such as `helm` and a CLI started
    /// as a process (spawns the serving task: call inside a tokio runtime). Returns the server's URL; see
    /// [`FakeApiServer::kubeconfig`].
    pub async fn serve_http(&self) -> std::io::Result<String> {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let fake = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fake = fake.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let fake = fake.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let (parts, body) = fake.answer(&parts, &body).into_parts();
                            let bytes = body.collect_bytes().await.unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(Response::from_parts(
                                parts,
                                http_body_util::Full::new(bytes),
                            ))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Ok(url)
    }

    /// A kubeconfig whose current context reaches `url` (from [`FakeApiServer::serve_http`]) in the fake's
    /// namespace, with no credentials.
    pub fn kubeconfig(&self, url: &str) -> String {
        let namespace = self.lock().namespace.clone();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        )
    }

    /// A [`KubeCluster`] on [`FakeApiServer::client`], with the fake's namespace and release, the default Secret
    /// and Lease names, and a 10 ms poll interval.
    pub fn cluster(&self) -> KubeCluster {
        let (namespace, release) = {
            let state = self.lock();
            (state.namespace.clone(), state.release.clone())
        };
        let names = ClusterNames {
            namespace,
            release,
            remote_write_secret: "greenflow-remote-write".into(),
            lease_name: "greenflow-experiment".into(),
        };
        KubeCluster::new(self.client(), names, "https://fake-apiserver").with_poll_interval(Duration::from_millis(10))
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The requests that could change something (all but `GET`).
    pub fn writes(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(RecordedRequest::is_write).collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// An object by collection path and name.
    pub fn object(&self, collection: &str, name: &str) -> Option<Value> {
        self.lock().objects.get(collection).and_then(|c| c.get(name)).cloned()
    }

    /// The Prometheus resource.
    pub fn prometheus(&self) -> Option<Value> {
        let state = self.lock();
        let collection = state.prometheus_collection();
        state.objects.get(&collection).and_then(|c| c.values().next()).cloned()
    }

    /// The experiment Lease (any name).
    pub fn lease(&self) -> Option<Value> {
        let state = self.lock();
        let collection = state.lease_collection();
        state.objects.get(&collection).and_then(|c| c.values().next()).cloned()
    }

    /// A Secret in the namespace.
    pub fn secret(&self, name: &str) -> Option<Value> {
        let collection = format!("/api/v1/namespaces/{}/secrets", self.lock().namespace);
        self.object(&collection, name)
    }

    /// Whether the namespace exists.
    pub fn has_namespace(&self) -> bool {
        let namespace = self.lock().namespace.clone();
        self.object("/api/v1/namespaces", &namespace).is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
        let protobuf = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with(protobuf::CONTENT_TYPE)));
        let decoded = protobuf.then(|| protobuf::decode(body).unwrap_or(Value::Null).to_string().into_bytes());
        let body = decoded.as_deref().unwrap_or(body);
        let mut state = self.lock();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let method = parts.method.as_str().to_owned();
        state.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        let body: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
        state.refresh(Instant::now());
        let apply = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("application/apply-patch")));
        state.applying = method == "PATCH" && apply;
        if method == "PATCH" && path.starts_with(&state.prometheus_collection()) {
            if apply {
                if let Some(conflict) = state.apply_conflict(&query, &body) {
                    return conflict;
                }
            } else if state.failing_scale_down && body["spec"]["replicas"] == 0 {
                return status_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "etcdserver: request timed out",
                );
            } else if body["spec"]["replicas"].is_i64() {
                // A merge patch takes the fields it sets for its manager (rule 7).
                state.replicas_owner = Some(query_param(&query, "fieldManager").unwrap_or_else(|| "unknown".into()));
            }
        }
        state.route(&method, &path, &query, body)
    }
}

/// A resource this fake serves: (plural name, kind, namespaced).
type ServedResource = (&'static str, &'static str, bool);

/// The groups and resources this fake serves: (group/version, [(resource, kind, namespaced)]).
const RESOURCES: &[(&str, &[ServedResource])] = &[
    (
        "v1",
        &[
            ("namespaces", "Namespace", false),
            ("secrets", "Secret", true),
            ("configmaps", "ConfigMap", true),
            ("pods", "Pod", true),
            ("services", "Service", true),
            ("serviceaccounts", "ServiceAccount", true),
        ],
    ),
    ("apps/v1", &[("statefulsets", "StatefulSet", true)]),
    ("coordination.k8s.io/v1", &[("leases", "Lease", true)]),
    ("monitoring.coreos.com/v1", &[("prometheuses", "Prometheus", true)]),
];

/// Rule 9: the legacy discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`) as the API server
/// serves them (`staging/src/k8s.io/apiserver/pkg/endpoints/discovery/{legacy,root,group,version}.go`): plain JSON,
/// which client-go's discovery accepts when the aggregated form is not offered.
fn discovery(path: &str) -> Option<Value> {
    let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
    let resources = |group_version: &str| {
        RESOURCES.iter().find(|(gv, _)| *gv == group_version).map(|(_, resources)| {
            let list: Vec<Value> = resources
                .iter()
                .map(|(name, kind, namespaced)| {
                    json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                           "kind": kind, "verbs": verbs})
                })
                .collect();
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
        })
    };
    match path {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/api/v1" => resources("v1"),
        "/apis" => {
            let groups: Vec<Value> = RESOURCES
                .iter()
                .filter_map(|(gv, _)| gv.split_once('/'))
                .map(|(group, version)| {
                    let version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
                    json!({"name": group, "versions": [version], "preferredVersion": version})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        _ => path.strip_prefix("/apis/").filter(|gv| gv.matches('/').count() == 1).and_then(resources),
    }
}

fn default_prometheus(namespace: &str, release: &str) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {
            "name": prometheus_name(release),
            "namespace": namespace,
            "generation": 1,
            "labels": {
                "app": PROMETHEUS_APP_LABEL,
                "release": release,
                "chart": "kube-prometheus-stack-88.5.3",
                "heritage": "Helm",
                "app.kubernetes.io/managed-by": "Helm",
            },
        },
        "spec": {
            "replicas": 0,
            "version": "v3.7.1",
            "externalLabels": {"greenflow_deployment": "default"},
        },
        "status": {
            "availableReplicas": 0,
            "replicas": 0,
            "conditions": [
                condition("Available", "True", 1, "", ""),
                condition("Reconciled", "True", 1, "", ""),
            ],
        },
    })
}

fn condition(kind: &str, status: &str, generation: i64, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": OffsetDateTime::now_utc().replace_nanosecond(0).ok().and_then(|t| t.format(&Rfc3339).ok()),
        "reason": reason,
        "message": message,
    })
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &status)
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(map) = target {
                for (key, value) in fields {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|term| !term.is_empty()).all(|term| match term.split_once('=') {
        Some((key, value)) => object["metadata"]["labels"][key].as_str() == Some(value.trim_start_matches('=')),
        None => object["metadata"]["labels"].get(term).is_some(),
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl State {
    fn prometheus_collection(&self) -> String {
        format!("/apis/monitoring.coreos.com/v1/namespaces/{}/prometheuses", self.namespace)
    }

    fn lease_collection(&self) -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", self.namespace)
    }

    fn pod_collection(&self) -> String {
        format!("/api/v1/namespaces/{}/pods", self.namespace)
    }

    fn resource_name(&self) -> String {
        self.objects
            .get(&self.prometheus_collection())
            .and_then(|c| c.keys().next().cloned())
            .unwrap_or_else(|| prometheus_name(&self.release))
    }

    /// The pods the operator's StatefulSets want for a spec: `<statefulset>-<ordinal>` per shard and replica
    /// (rule 1).
    fn wanted_pods(&self, spec: &Value) -> Vec<String> {
        let name = self.resource_name();
        let replicas = spec["replicas"].as_i64().unwrap_or(1);
        let shards = spec["shards"].as_i64().unwrap_or(1).max(1);
        (0..shards)
            .flat_map(|shard| {
                let set =
                    if shard == 0 { format!("prometheus-{name}") } else { format!("prometheus-{name}-shard-{shard}") };
                (0..replicas).map(move |ordinal| format!("{set}-{ordinal}"))
            })
            .collect()
    }

    /// A change of the Prometheus resource's spec: its pods come or go (rules 2, 3), its labels are reloaded later
    /// (rule 5).
    fn on_prometheus_change(&mut self, before: &Value, after: &Value, now: Instant) {
        let wanted = self.wanted_pods(&after["spec"]);
        for name in &wanted {
            match self.pods.get(name) {
                Some(PodLife { deleted: Some(_), .. }) => {
                    self.pods_wanted.insert(name.clone());
                }
                Some(_) => {}
                None => {
                    let life = PodLife { created: now, ready_at: now + self.timing.pod_ready_after, deleted: None };
                    self.pods.insert(name.clone(), life);
                }
            }
        }
        self.pods_wanted.retain(|name| wanted.contains(name));
        for (name, pod) in self.pods.iter_mut() {
            if !wanted.contains(name) && pod.deleted.is_none() {
                pod.deleted = Some(now);
            }
        }
        if before["spec"]["externalLabels"] != after["spec"]["externalLabels"] {
            let labels = after["spec"]["externalLabels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            self.label_history.push((now, labels));
        }
    }

    /// Brings the pods up to `now` (rules 2, 3) and writes them where the API serves pods.
    fn refresh(&mut self, now: Instant) {
        let gone_after = self.timing.pod_gone_after;
        let ended: Vec<(String, Instant)> = self
            .pods
            .iter()
            .filter_map(|(name, pod)| {
                pod.deleted.filter(|d| now >= *d + gone_after).map(|d| (name.clone(), d + gone_after))
            })
            .collect();
        for (name, ended_at) in ended {
            self.pods.remove(&name);
            if self.pods_wanted.remove(&name) {
                let life =
                    PodLife { created: ended_at, ready_at: ended_at + self.timing.pod_ready_after, deleted: None };
                self.pods.insert(name, life);
            }
        }
        let collection = self.pod_collection();
        let name = self.resource_name();
        let shard_of = |pod: &str| -> String {
            pod.split("-shard-").nth(1).and_then(|rest| rest.split('-').next()).unwrap_or("0").to_owned()
        };
        let mut objects = BTreeMap::new();
        for (pod_name, pod) in &self.pods {
            let sidecar_started = matches!(self.sidecar, None | Some(Sidecar::Joins(_)));
            let ready = self.operator != Operator::NeverAvailable
                && sidecar_started
                && now >= pod.ready_at
                && pod.deleted.is_none_or(|deleted| now < deleted + self.timing.pod_unready_after);
            let mut object = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": self.namespace,
                    "labels": {
                        "app.kubernetes.io/name": "prometheus",
                        "app.kubernetes.io/instance": name,
                        "app.kubernetes.io/managed-by": "prometheus-operator",
                        "operator.prometheus.io/name": name,
                        "operator.prometheus.io/shard": shard_of(pod_name),
                        "prometheus": name,
                        "statefulset.kubernetes.io/pod-name": pod_name,
                    },
                },
                "spec": {"containers": [{"name": "prometheus", "ports": [{"name": "web", "containerPort": PROMETHEUS_POD_PORT}]}]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                },
            });
            if let Some(sidecar) = &self.sidecar {
                let restarts = now.duration_since(pod.created).as_secs() / 10 + 1;
                let (state, last, started) = match sidecar {
                    Sidecar::Joins(_) => (json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}}), json!({}), true),
                    Sidecar::NeverJoins(_) => {
                        (json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}}), json!({}), false)
                    }
                    Sidecar::CrashLoops(_) => (
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 40s restarting failed container=tailscale pod={pod_name}")}}),
                        json!({"terminated": {"exitCode": 1, "reason": "Error", "containerID": "containerd://0123"}}),
                        false,
                    ),
                    Sidecar::ImagePull(message) => {
                        (json!({"waiting": {"reason": "ImagePullBackOff", "message": message}}), json!({}), false)
                    }
                };
                let restart_count = if matches!(sidecar, Sidecar::CrashLoops(_)) { restarts } else { 0 };
                object["spec"]["initContainers"] = json!([{"name": "tailscale", "restartPolicy": "Always"}]);
                object["status"]["initContainerStatuses"] = json!([{
                    "name": "tailscale", "state": state, "lastState": last, "ready": started, "started": started,
                    "restartCount": restart_count, "image": "ghcr.io/tailscale/tailscale:v1.102.3",
                }]);
                if !started {
                    object["status"]["phase"] = json!("Pending");
                    object["status"]["containerStatuses"] = json!([{
                        "name": "prometheus", "state": {"waiting": {"reason": "PodInitializing"}}, "ready": false,
                        "started": false, "restartCount": 0, "lastState": {},
                    }]);
                }
            }
            if pod.deleted.is_some() {
                object["metadata"]["deletionTimestamp"] = json!(micro_time(OffsetDateTime::now_utc()));
                object["metadata"]["deletionGracePeriodSeconds"] = json!(660);
            }
            objects.insert(pod_name.clone(), object);
        }
        let same = |a: &Value, b: &Value| {
            a["status"] == b["status"]
                && a["metadata"]["deletionTimestamp"].is_null() == b["metadata"]["deletionTimestamp"].is_null()
        };
        let unchanged = match self.objects.get(&collection) {
            None => objects.is_empty(),
            Some(c) => {
                c.len() == objects.len() && objects.iter().all(|(k, v)| c.get(k).is_some_and(|old| same(old, v)))
            }
        };
        if !unchanged {
            self.objects.remove(&collection);
            for (_, object) in objects {
                self.insert(collection.clone(), object);
            }
        }
    }

    /// Rule 7 for a patch of the Prometheus resource: records who owns `spec.replicas`; for an apply patch that
    /// sets it to another value than its owner's, without `force=true`, the 409 a real API server answers.
    fn apply_conflict(&mut self, query: &str, body: &Value) -> Option<Response<Body>> {
        let manager = query_param(query, "fieldManager").unwrap_or_else(|| "unknown".into());
        let force = query_param(query, "force").as_deref() == Some("true");
        let wanted = body["spec"]["replicas"].as_i64()?;
        let current = self
            .objects
            .get(&self.prometheus_collection())
            .and_then(|c| c.values().next())
            .and_then(|o| o["spec"]["replicas"].as_i64());
        match &self.replicas_owner {
            Some(owner) if *owner != manager && current != Some(wanted) && !force => Some(status_response(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Apply failed with 1 conflict: conflict with \"{owner}\" using monitoring.coreos.com/v1: .spec.replicas"
                ),
            )),
            _ => {
                if current != Some(wanted) || self.replicas_owner.is_none() {
                    self.replicas_owner = Some(manager);
                }
                None
            }
        }
    }

    /// Pods `Running` and `Ready`, terminating ones included (rule 4).
    fn ready_pods(&self) -> i64 {
        self.objects
            .get(&self.pod_collection())
            .into_iter()
            .flat_map(|c| c.values())
            .filter(|p| p["status"]["conditions"][0]["status"] == "True")
            .count() as i64
    }

    fn next_version(&mut self) -> String {
        self.next_version += 1;
        self.next_version.to_string()
    }

    fn insert(&mut self, collection: String, mut object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let version = self.next_version();
        object["metadata"]["resourceVersion"] = json!(version);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{name}-{version}"));
        }
        self.objects.entry(collection).or_default().insert(name, object);
    }

    fn route(&mut self, method: &str, path: &str, query: &str, body: Value) -> Response<Body> {
        if path == "/version" && method == "GET" {
            let version = self.kubernetes_version.clone();
            let minor = version.split('.').nth(1).unwrap_or("33").to_owned();
            return json_response(
                StatusCode::OK,
                &json!({
                    "major": "1", "minor": minor, "gitVersion": version, "gitCommit": "0000000",
                    "gitTreeState": "clean", "buildDate": "2025-05-15T00:00:00Z", "goVersion": "go1.24.2",
                    "compiler": "gc", "platform": "linux/amd64",
                }),
            );
        }
        if method == "GET"
            && let Some(document) = discovery(path)
        {
            return json_response(StatusCode::OK, &document);
        }
        if method == "GET" && path == "/openapi/v2" {
            // Rule 9: an OpenAPI document with no definitions (an empty protobuf message).
            return Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
                .body(Body::from(Vec::new()))
                .unwrap_or_else(|_| Response::new(Body::from(Vec::new())));
        }
        let proxy_prefix = format!("/api/v1/namespaces/{}/services/", self.namespace);
        if let Some(rest) = path.strip_prefix(&proxy_prefix)
            && let Some((service, sub)) = rest.split_once("/proxy")
        {
            return self.proxy(method, service, sub);
        }
        let pod_proxy_prefix = format!("/api/v1/namespaces/{}/pods/", self.namespace);
        if let Some(rest) = path.strip_prefix(&pod_proxy_prefix)
            && let Some((target, sub)) = rest.split_once("/proxy")
        {
            return self.pod_proxy(method, target, sub);
        }
        if let Some(pod) = path.strip_prefix(&pod_proxy_prefix).and_then(|rest| rest.strip_suffix("/log"))
            && method == "GET"
        {
            return self.pod_log(pod, query);
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Collections are /api/v1/<...> or /apis/<group>/<version>/<...>; an item adds its name.
        let base = if segments.first() == Some(&"api") { 2 } else { 3 };
        let kinds_at = |n: usize| segments.len() > base && (segments.len() - base) % 2 == n;
        let (collection, name) = if kinds_at(1) {
            (path.to_owned(), None)
        } else if kinds_at(0) && segments.len() > base {
            let (collection, name) = path.rsplit_once('/').unwrap_or((path, ""));
            (collection.to_owned(), Some(name.to_owned()))
        } else {
            return status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let resource = collection.rsplit('/').next().unwrap_or_default().to_owned();
        let is_prometheus = collection == self.prometheus_collection();
        if is_prometheus && method == "GET" {
            self.operator_tick();
        }
        match (method, name) {
            ("GET", None) => {
                if is_prometheus && !self.objects.contains_key(&collection) {
                    // As when the CRD is missing: a plain 404.
                    return status_response(StatusCode::NOT_FOUND, "NotFound", "404 page not found");
                }
                let selector = query_param(query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .get(&collection)
                    .into_iter()
                    .flat_map(|c| c.values())
                    .filter(|o| labels_match(o, &selector))
                    .cloned()
                    .collect();
                let version = self.next_version.to_string();
                if matches!(query_param(query, "watch").as_deref(), Some("true" | "1")) {
                    // Rule 9: a watch list (`sendInitialEvents=true`) gets the objects as ADDED events and the
                    // bookmark that ends them; a watch from a resourceVersion gets the objects changed since as
                    // MODIFIED events; then the server ends the watch.
                    let initial = query_param(query, "sendInitialEvents").as_deref() == Some("true");
                    let since: u64 =
                        query_param(query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or_default();
                    let changed = |object: &&Value| {
                        object["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok()) > Some(since)
                    };
                    let mut events: String = items
                        .iter()
                        .filter(|object| initial || changed(object))
                        .map(|object| {
                            let kind = if initial { "ADDED" } else { "MODIFIED" };
                            format!("{}\n", json!({"type": kind, "object": object}))
                        })
                        .collect();
                    if initial {
                        let kind = items.first().map(|o| o["kind"].clone()).unwrap_or(json!("List"));
                        let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind, "metadata": {
                            "resourceVersion": version, "annotations": {"k8s.io/initial-events-end": "true"}}}});
                        events.push_str(&format!("{bookmark}\n"));
                    }
                    return Response::builder()
                        .status(StatusCode::OK)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(events.into_bytes()))
                        .unwrap_or_else(|_| Response::new(Body::from(Vec::new())));
                }
                // The list's kind is `<Kind>List` in the resource's group version, as typed clients decode it.
                let (api_version, kind) = RESOURCES
                    .iter()
                    .find_map(|(gv, resources)| {
                        resources.iter().find(|(name, _, _)| *name == resource).map(|(_, kind, _)| (*gv, *kind))
                    })
                    .map_or(("v1".to_owned(), "List".to_owned()), |(gv, kind)| (gv.to_owned(), format!("{kind}List")));
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": version},
                            "items": items}),
                )
            }
            ("POST", None) => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                if self.objects.get(&collection).is_some_and(|c| c.contains_key(&name)) {
                    return status_response(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{resource} \"{name}\" already exists"),
                    );
                }
                let mut object = body;
                object["metadata"]["generation"] = json!(1);
                object["metadata"]["creationTimestamp"] = json!(micro_time(OffsetDateTime::now_utc()));
                self.insert(collection.clone(), object);
                let stored = self.objects[&collection][&name].clone();
                json_response(StatusCode::CREATED, &stored)
            }
            (method, Some(name)) => self.item(method, &collection, &resource, &name, body),
            _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed"),
        }
    }

    fn item(&mut self, method: &str, collection: &str, resource: &str, name: &str, body: Value) -> Response<Body> {
        if method == "PUT"
            && collection == self.lease_collection()
            && let Some(thief) = self.steal_lease_for.take()
            && let Some(mut lease) = self.objects.get(collection).and_then(|c| c.get(name)).cloned()
        {
            lease["spec"]["holderIdentity"] = json!(thief);
            lease["spec"]["renewTime"] = json!(micro_time(OffsetDateTime::now_utc()));
            lease["spec"]["acquireTime"] = json!(micro_time(OffsetDateTime::now_utc()));
            self.insert(collection.to_owned(), lease);
        }
        let not_found =
            || status_response(StatusCode::NOT_FOUND, "NotFound", &format!("{resource} \"{name}\" not found"));
        let Some(current) = self.objects.get(collection).and_then(|c| c.get(name)).cloned() else {
            if method == "PATCH" && self.applying {
                // Rule 9: an apply patch of an absent object creates it.
                return self.route("POST", collection, "", body);
            }
            return not_found();
        };
        let conflict = || {
            status_response(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply \
                     your changes to the latest version and try again"
                ),
            )
        };
        match method {
            "GET" => json_response(StatusCode::OK, &current),
            "PUT" | "PATCH" => {
                let mut updated = if method == "PUT" {
                    let sent = body["metadata"]["resourceVersion"].as_str();
                    if sent.is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str()) {
                        return conflict();
                    }
                    let mut updated = body;
                    updated["metadata"]["uid"] = current["metadata"]["uid"].clone();
                    updated["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
                    if updated.get("status").is_none() && current.get("status").is_some() {
                        updated["status"] = current["status"].clone();
                    }
                    updated
                } else {
                    let mut updated = current.clone();
                    merge_patch(&mut updated, &body);
                    updated
                };
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = updated.get("spec") != current.get("spec");
                updated["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
                if changed && collection == self.prometheus_collection() {
                    self.stale_reads = self.stale_reads_after_change;
                    self.on_prometheus_change(&current, &updated, Instant::now());
                }
                self.insert(collection.to_owned(), updated);
                if changed && collection == self.prometheus_collection() {
                    self.refresh(Instant::now());
                }
                json_response(StatusCode::OK, &self.objects[collection][name])
            }
            "DELETE" => {
                let wanted = body["preconditions"]["resourceVersion"].as_str();
                if wanted.is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str()) {
                    return conflict();
                }
                if let Some(c) = self.objects.get_mut(collection) {
                    c.remove(name);
                }
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, "kind": resource, "uid": current["metadata"]["uid"]}}),
                )
            }
            _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed"),
        }
    }

    /// The simulated operator (rule 4): after the configured number of stale reads, stamps the status of each
    /// Prometheus resource with its current generation, counting the pods that are running and ready, terminating
    /// ones included.
    fn operator_tick(&mut self) {
        if self.operator == Operator::Stopped {
            return;
        }
        if self.stale_reads > 0 {
            self.stale_reads -= 1;
            return;
        }
        let ready = self.ready_pods();
        let pods = self.objects.get(&self.pod_collection()).map_or(0, |c| c.len() as i64);
        let collection = self.prometheus_collection();
        let Some(items) = self.objects.get_mut(&collection) else { return };
        for object in items.values_mut() {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
            let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let (available, reason, message) = if ready >= replicas {
                ("True", "", "")
            } else if ready == 0 {
                ("False", "NoPodReady", "shard 0: pod prometheus-0 is not ready")
            } else {
                ("Degraded", "SomePodsNotReady", "shard 0: some pods are not ready")
            };
            object["status"] = json!({
                "replicas": pods,
                "availableReplicas": ready,
                "updatedReplicas": pods,
                "unavailableReplicas": pods - ready,
                "conditions": [
                    condition("Available", available, generation, reason, message),
                    condition("Reconciled", "True", generation, "", ""),
                ],
            });
        }
    }

    fn metrics_response(&self, pod: &str) -> Response<Body> {
        let text = (self.metrics)(pod);
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(Body::from(text.into_bytes()))
            .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
    }

    /// The service proxy: ready endpoints only (rule 6).
    fn proxy(&mut self, method: &str, service: &str, sub: &str) -> Response<Body> {
        let name = self.resource_name();
        let expected = format!("http:{name}:{PROMETHEUS_PORT_NAME}");
        if method != "GET" || service != expected || sub != "/metrics" {
            return status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("services \"{service}\" not found (the fake serves only {expected}/proxy/metrics)"),
            );
        }
        // A ready endpoint, as kube-proxy would pick one at random: here the first.
        let serving =
            self.objects.get(&self.pod_collection()).into_iter().flat_map(|c| c.values()).find(|p| {
                p["status"]["conditions"][0]["status"] == "True" && p["metadata"]["deletionTimestamp"].is_null()
            });
        let Some(serving) = serving.and_then(|p| p["metadata"]["name"].as_str()).map(str::to_owned) else {
            return status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("no endpoints available for service \"{name}\""),
            );
        };
        self.metrics_response(&serving)
    }

    /// A container's log as the kubelet serves it (rule 8).
    fn pod_log(&mut self, pod: &str, query: &str) -> Response<Body> {
        let Some(object) = self.objects.get(&self.pod_collection()).and_then(|c| c.get(pod)).cloned() else {
            return status_response(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{pod}\" not found"));
        };
        let container = query_param(query, "container").unwrap_or_else(|| "prometheus".into());
        let bad = |message: String| status_response(StatusCode::BAD_REQUEST, "BadRequest", &message);
        let text = match (container.as_str(), &self.sidecar) {
            ("tailscale", Some(Sidecar::Joins(log) | Sidecar::NeverJoins(log) | Sidecar::CrashLoops(log))) => {
                log.clone()
            }
            ("tailscale", Some(Sidecar::ImagePull(_))) => {
                return bad(format!(
                    "container \"tailscale\" in pod \"{pod}\" is waiting to start: trying and failing to pull image"
                ));
            }
            ("prometheus", _) if object["status"]["phase"] == "Pending" => {
                return bad(format!("container \"prometheus\" in pod \"{pod}\" is waiting to start: PodInitializing"));
            }
            ("prometheus", _) => self.prometheus_log.clone(),
            (other, _) => return bad(format!("container {other} is not valid for pod {pod}")),
        };
        let tail = query_param(query, "tailLines").and_then(|n| n.parse::<usize>().ok()).unwrap_or(usize::MAX);
        let lines: Vec<&str> = text.lines().collect();
        let kept = lines[lines.len().saturating_sub(tail)..].join("\n");
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(Body::from(kept.into_bytes()))
            .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
    }

    /// The pod proxy: the pod itself while it exists (rule 6).
    fn pod_proxy(&mut self, method: &str, target: &str, sub: &str) -> Response<Body> {
        let (pod, port) = target.split_once(':').unwrap_or((target, "9090"));
        let port = port.rsplit(':').next().unwrap_or(port);
        let exists = self.objects.get(&self.pod_collection()).is_some_and(|c| c.contains_key(pod));
        if !exists {
            return status_response(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{pod}\" not found"));
        }
        if method != "GET" || sub != "/metrics" || (port != "9090" && port != "web") {
            return status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("error trying to reach service: dial tcp 10.244.1.7:{port}: connect: connection refused"),
            );
        }
        self.metrics_response(pod)
    }
}
