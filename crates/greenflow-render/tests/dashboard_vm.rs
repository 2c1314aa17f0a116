//! The provisioned dashboard against a real VictoriaMetrics (`GREENFLOW_TEST_PROGRAMS`, else PATH): its variables
//! are evaluated the way Grafana's Prometheus datasource does (`query_result` is an instant query at the end of the
//! time range, each series written `name{k="v",...} value ms`, the variable's regex applied,
//! `packages/grafana-prometheus/src/metric_find_query.ts`), substituted into every panel query and annotation, and
//! each is run against the query API over two runs written with their markers, one of them three days old.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use greenflow_render::{DASHBOARD_JSON, DATASOURCE_UID};
use serde_json::{Value, json};

/// A VictoriaMetrics child process on a free loopback port, killed on drop.
struct Vm {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    fn start() -> Self {
        let programs = std::env::var_os("GREENFLOW_TEST_PROGRAMS").map(PathBuf::from).unwrap_or_default();
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(programs.join("victoria-metrics"))
            .arg(format!("-storageDataPath={}", data.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics starts");
        let vm = Self { child, url: format!("http://127.0.0.1:{port}"), _data: data };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{}/health", vm.url)).map(|r| r.status().is_success()).ok() != Some(true) {
            assert!(Instant::now() < deadline, "VictoriaMetrics at {} never became healthy", vm.url);
            std::thread::sleep(Duration::from_millis(100));
        }
        vm
    }

    fn import(&self, lines: &[Value]) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let response =
            reqwest::blocking::Client::new().post(format!("{}/api/v1/import", self.url)).body(body).send().unwrap();
        assert!(response.status().is_success(), "{:?}", response.text());
        reqwest::blocking::get(format!("{}/internal/force_flush", self.url)).unwrap();
    }

    /// `path` with `params`; the answer's `data`, after asserting the query was accepted.
    fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let response =
            reqwest::blocking::Client::new().post(format!("{}{path}", self.url)).form(params).send().unwrap();
        let status = response.status();
        let body: Value = response.json().unwrap();
        assert!(status.is_success() && body["status"] == "success", "{path} {params:?}: {status} {body}");
        body["data"].clone()
    }
}

/// One run: its id, experiment and window (seconds), for the markers and the node metrics it writes.
struct Run {
    id: &'static str,
    experiment: &'static str,
    start: i64,
    end: i64,
    /// CPU cores busy, constant over the run.
    busy: f64,
}

impl Run {
    fn series(&self) -> Vec<Value> {
        let labels = |name: &str, extra: &[(&str, &str)]| {
            let mut metric = json!({"__name__": name, "greenflow_run": self.id, "greenflow_experiment": self.experiment,
                                    "instance": "node-1:9100"});
            for (k, v) in extra {
                metric[*k] = json!(v);
            }
            metric
        };
        let times: Vec<i64> = (self.start..=self.end).step_by(10).map(|t| t * 1000).collect();
        let counter = |per_second: f64| -> Vec<f64> {
            times.iter().map(|t| (t / 1000 - self.start) as f64 * per_second).collect()
        };
        let gauge = |value: f64| -> Vec<f64> { vec![value; times.len()] };
        let line = |metric: Value, values: Vec<f64>| json!({"metric": metric, "values": values, "timestamps": times});
        let mut lines = vec![
            line(labels("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")]), counter(self.busy)),
            line(labels("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")]), counter(1.0)),
            line(labels("node_memory_MemTotal_bytes", &[]), gauge(8e9)),
            line(labels("node_memory_MemAvailable_bytes", &[]), gauge(6e9)),
            line(labels("node_network_receive_bytes_total", &[("device", "eth0")]), counter(1e6)),
            line(labels("node_network_transmit_bytes_total", &[("device", "eth0")]), counter(2e6)),
            line(labels("node_disk_read_bytes_total", &[("device", "sda")]), counter(3e5)),
            line(labels("node_disk_written_bytes_total", &[("device", "sda")]), counter(4e5)),
            line(labels("kepler_node_cpu_watts", &[("zone", "package")]), gauge(40.0)),
            line(labels("kepler_node_cpu_joules_total", &[("zone", "package")]), counter(40.0)),
            line(labels("scaph_host_power_microwatts", &[]), gauge(41e6)),
            line(labels("scaph_host_energy_microjoules", &[]), counter(41e6)),
            line(labels("up", &[("job", "node-exporter")]), gauge(1.0)),
        ];
        for (phase, at) in [("start", self.start), ("end", self.end)] {
            let mut metric = labels("greenflow_run_info", &[("phase", phase)]);
            metric.as_object_mut().unwrap().remove("instance");
            lines.push(json!({"metric": metric, "values": [1.0], "timestamps": [at * 1000]}));
        }
        lines
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `text` with every `$name` and `${name}` of `values` replaced (longest names first, as Grafana matches them).
fn substitute(text: &str, values: &[(&str, String)]) -> String {
    let mut values = values.to_vec();
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}", name = name), &value).replace(&format!("${name}"), &value);
    }
    out
}

/// A `query_result(...)` variable's values, as Grafana computes them at `time`.
fn variable_values(vm: &Vm, variable: &Value, values: &[(&str, String)], time: i64) -> Vec<String> {
    let query = substitute(variable["query"]["query"].as_str().unwrap(), values);
    let inner = query.strip_prefix("query_result(").and_then(|q| q.strip_suffix(')')).expect("a query_result variable");
    let data = vm.api("/api/v1/query", &[("query", inner.to_owned()), ("time", time.to_string())]);
    assert_eq!(data["resultType"], "vector", "{query}");
    let regex = variable["regex"].as_str().unwrap();
    let regex = regex::Regex::new(regex.strip_prefix('/').and_then(|r| r.strip_suffix('/')).unwrap()).unwrap();
    let mut found = Vec::new();
    for series in data["result"].as_array().unwrap() {
        let mut metric = series["metric"].as_object().unwrap().clone();
        let name = metric.remove("__name__").and_then(|n| n.as_str().map(str::to_owned)).unwrap_or_default();
        let labels: Vec<String> = metric.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap())).collect();
        let value = series["value"][1].as_str().unwrap();
        let ms = series["value"][0].as_f64().unwrap() * 1000.0;
        let text = format!("{name}{{{}}} {value} {ms}", labels.join(","));
        let captured = regex.captures(&text).unwrap_or_else(|| panic!("{regex} does not match {text}"));
        found.push(captured[1].to_owned());
    }
    found
}

#[test]
fn every_panel_variable_and_annotation_uses_the_provisioned_datasource() {
    let dashboard: Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
    let mut holders = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        holders.push(&panel["datasource"]);
        holders.extend(panel["targets"].as_array().unwrap().iter().map(|t| &t["datasource"]));
    }
    holders.extend(dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| &v["datasource"]));
    holders.extend(dashboard["annotations"]["list"].as_array().unwrap().iter().map(|a| &a["datasource"]));
    for datasource in holders {
        assert_eq!(datasource, &json!({"type": "prometheus", "uid": DATASOURCE_UID}));
    }
}

#[test]
fn every_variable_is_used_by_something_else() {
    let dashboard: Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
    let text = dashboard.to_string();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let own = variable["query"]["query"].as_str().unwrap();
        let uses = text.matches(&format!("${name}")).count() + text.matches(&format!("${{{name}}}")).count();
        let own_uses = own.matches(&format!("${name}")).count() * 2; // the query and its `definition`
        assert!(uses > own_uses, "variable `{name}` is used by nothing");
    }
    let ids: BTreeSet<i64> =
        dashboard["panels"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), dashboard["panels"].as_array().unwrap().len(), "panel ids are unique");
}

#[test]
fn a_run_link_opens_the_run_window_with_the_selections_kept() {
    let dashboard: Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
    let table = dashboard["panels"].as_array().unwrap().iter().find(|p| p["type"] == "table").unwrap();
    let renamed = &table["transformations"].as_array().unwrap().iter().find(|t| t["id"] == "organize").unwrap()["options"]
        ["renameByName"];
    let link = table["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["matcher"]["options"] == renamed["greenflow_run"])
        .and_then(|o| o["properties"].as_array().unwrap().iter().find(|p| p["id"] == "links"))
        .expect("the run column links")["value"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.starts_with(&format!("/d/{}/", dashboard["uid"].as_str().unwrap())), "{link}");
    assert!(link.contains("var-run=${__value.raw}"), "{link}");
    // The padded window columns, by the names the table gives them.
    for (value, param) in [("Value #C", "from"), ("Value #D", "to")] {
        let field = renamed[value].as_str().unwrap();
        assert!(link.contains(&format!("{param}=${{__data.fields[\"{field}\"]}}")), "{link}");
    }
    // A multi-valued variable goes into a URL as one parameter per value.
    assert!(link.contains("${experiment:queryparam}") && link.contains("${baseline:queryparam}"), "{link}");
}

#[test]
fn the_dashboard_lists_old_runs_and_overlays_them_on_real_data() {
    let vm = Vm::start();
    let now = now() / 10 * 10;
    // Three days old: VictoriaMetrics' label APIs would not list it without a time range.
    let old = Run {
        id: "20261201T090000Z-0a1b",
        experiment: "kafka",
        start: now - 3 * 86400,
        end: now - 3 * 86400 + 600,
        busy: 0.5,
    };
    let new = Run {
        id: "20261204T070000Z-2c3d",
        experiment: "redpanda",
        start: now - 7200,
        end: now - 7200 + 600,
        busy: 0.25,
    };
    vm.import(&old.series());
    vm.import(&new.series());
    let dashboard: Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
    let variable = |name: &str| {
        dashboard["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap().clone()
    };

    // At the default time range (to = now), and at the end of the old run's window as a run link sets it.
    for time in [now, old.end + 30] {
        let experiments: BTreeSet<String> =
            variable_values(&vm, &variable("experiment"), &[], time).into_iter().collect();
        assert_eq!(experiments, BTreeSet::from(["kafka".to_owned(), "redpanda".to_owned()]), "at {time}");
        let all = [("experiment", variable("experiment")["allValue"].as_str().unwrap().to_owned())];
        for name in ["run", "baseline"] {
            let runs: BTreeSet<String> = variable_values(&vm, &variable(name), &all, time).into_iter().collect();
            assert_eq!(runs, BTreeSet::from([old.id.to_owned(), new.id.to_owned()]), "{name} at {time}");
        }
        let only = [("experiment", "kafka".to_owned())];
        assert_eq!(variable_values(&vm, &variable("run"), &only, time), [old.id], "the experiment filters the runs");
    }
    let pair = [("run", new.id.to_owned()), ("baseline", old.id.to_owned()), ("experiment", ".*".to_owned())];
    let shift = variable_values(&vm, &variable("shift"), &pair, now);
    assert_eq!(shift, [(new.start - old.start).to_string()], "the overlay shift is the runs' start difference");
    let none = [("run", new.id.to_owned()), ("baseline", "no-such-run".to_owned()), ("experiment", ".*".to_owned())];
    assert_eq!(variable_values(&vm, &variable("shift"), &none, now), ["0"], "no baseline: no shift");

    let values = [
        ("run", new.id.to_owned()),
        ("baseline", old.id.to_owned()),
        ("experiment", ".*".to_owned()),
        ("shift", shift[0].clone()),
        ("__range", format!("{}s", new.end - new.start)),
    ];
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let expr = substitute(target["expr"].as_str().unwrap(), &values);
            assert!(!expr.contains('$'), "{title}: a variable left in {expr}");
            if target["instant"] == true {
                let data = vm.api("/api/v1/query", &[("query", expr.clone()), ("time", new.end.to_string())]);
                let result = data["result"].as_array().unwrap();
                assert!(!result.is_empty(), "{title}: {expr} gives nothing");
                if panel["type"] == "table" {
                    // Start and end of both runs, in milliseconds, for the time-range links.
                    let by_run: BTreeSet<(String, i64)> = result
                        .iter()
                        .map(|s| {
                            (
                                s["metric"]["greenflow_run"].as_str().unwrap().to_owned(),
                                s["value"][1].as_str().unwrap().parse::<f64>().unwrap() as i64,
                            )
                        })
                        .collect();
                    let (phase, pad) = (
                        expr.contains("phase=\"start\""),
                        if expr.contains("- 30000") {
                            -30_000
                        } else if expr.contains("+ 30000") {
                            30_000
                        } else {
                            0
                        },
                    );
                    let at = |run: &Run| if phase { run.start } else { run.end } * 1000 + pad;
                    assert_eq!(
                        by_run,
                        BTreeSet::from([(old.id.to_owned(), at(&old)), (new.id.to_owned(), at(&new))]),
                        "{expr}"
                    );
                } else {
                    let energy: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
                    assert!(energy > 0.0, "{title}: {expr} = {energy}");
                }
            } else {
                let data = vm.api(
                    "/api/v1/query_range",
                    &[
                        ("query", expr.clone()),
                        ("start", new.start.to_string()),
                        ("end", new.end.to_string()),
                        ("step", "10s".to_owned()),
                    ],
                );
                let result = data["result"].as_array().unwrap();
                // The baseline's queries, shifted onto the new run's window, find the old run's samples there.
                assert_eq!(result.len(), 1, "{title}: {expr} gives {} series over the run", result.len());
                if title == "CPU busy" {
                    let busy = if expr.contains(old.id) { old.busy } else { new.busy };
                    let last: f64 =
                        result[0]["values"].as_array().unwrap().last().unwrap()[1].as_str().unwrap().parse().unwrap();
                    assert!((last - busy).abs() < 1e-6, "{title}: {expr} = {last}, not {busy}");
                }
            }
        }
    }
    for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
        let expr = substitute(annotation["expr"].as_str().unwrap(), &values);
        let data = vm.api(
            "/api/v1/query_range",
            &[
                ("query", expr),
                ("start", (old.start - 60).to_string()),
                ("end", now.to_string()),
                ("step", "10s".to_owned()),
            ],
        );
        assert_eq!(data["result"].as_array().unwrap().len(), 4, "start and end markers of both runs");
    }
}
