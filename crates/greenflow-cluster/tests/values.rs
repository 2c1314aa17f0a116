//! The kube-prometheus-stack values greenflow renders, checked against the pinned upstream chart values and the
//! Prometheus CRD schema in `shared/reference/`, and for hostile strings in every text field.

use std::path::{Path, PathBuf};

use greenflow_config::Settings;
use proptest::prelude::*;
use serde_yaml::Value;

fn reference_dir() -> PathBuf {
    // The repository sits beside `shared/` (the project's design and reference material).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    root.join("shared/reference/kube-prometheus-stack-88.5.3")
}

fn settings(yaml: &str, env: &[(&str, &str)]) -> Settings {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greenflow.yaml"), yaml).unwrap();
    let mut vars: Vec<(String, String)> = vec![("HOME".into(), "/home/r".into())];
    vars.extend(env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    Settings::load(None, dir.path(), vars).unwrap()
}

fn values(yaml: &str) -> Value {
    let text = greenflow_cluster::helm_values(&settings(yaml, &[]), None).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

const FULL: &str = "sink:\n  public_host: laptop.tail1234.ts.net\ncluster:\n  deployment: g5k-nancy\n  \
                    node_selector:\n    kubernetes.io/hostname: node-1\n  scaphandre: true\n  tls_server_name: \
                    laptop.tail1234.ts.net\n  storage:\n    size: 20Gi\n    class: local-path\n";

#[test]
fn the_queue_survives_the_pod_only_with_cluster_storage() {
    let with = values(FULL);
    let spec = &with["prometheus"]["prometheusSpec"];
    let claim = &spec["storageSpec"]["volumeClaimTemplate"]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"].as_str(), Some("20Gi"));
    assert_eq!(claim["storageClassName"].as_str(), Some("local-path"));
    // The kubelet must not SIGKILL Prometheus before its flush deadline (600 s) has passed.
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() > 600, "{spec:?}");
    let without = values("sink:\n  public_host: laptop.tail1234.ts.net\n");
    assert!(without["prometheus"]["prometheusSpec"].get("storageSpec").is_none());
}

#[test]
fn values_snapshot() {
    insta::assert_snapshot!(greenflow_cluster::helm_values(&settings(FULL, &[]), None).unwrap());
}

#[test]
fn the_password_is_referenced_never_included() {
    let settings = settings(FULL, &[("GREENFLOW_SINK_PASSWORD", "hunter2-very-secret")]);
    let text = greenflow_cluster::helm_values(&settings, None).unwrap();
    assert!(!text.contains("hunter2"));
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let auth = &doc["prometheus"]["prometheusSpec"]["remoteWrite"][0]["basicAuth"];
    assert_eq!(auth["password"]["name"].as_str(), Some("greenflow-remote-write"));
    assert_eq!(auth["password"]["key"].as_str(), Some("password"));
    assert_eq!(auth["username"]["key"].as_str(), Some("username"));
}

#[test]
fn what_a_run_relies_on() {
    let doc = values(FULL);
    let spec = &doc["prometheus"]["prometheusSpec"];
    assert_eq!(spec["replicas"].as_u64(), Some(0), "nothing scrapes outside a run");
    assert_eq!(spec["externalLabels"]["greenflow_deployment"].as_str(), Some("g5k-nancy"));
    assert_eq!(spec["scrapeInterval"].as_str(), Some("5s"));
    assert_eq!(spec["serviceMonitorSelectorNilUsesHelmValues"].as_bool(), Some(false));
    let rw = &spec["remoteWrite"][0];
    assert_eq!(rw["url"].as_str(), Some("https://laptop.tail1234.ts.net/vm/api/v1/write"));
    assert_eq!(rw["messageVersion"].as_str(), Some("V1.0"));
    assert_eq!(rw["tlsConfig"]["serverName"].as_str(), Some("laptop.tail1234.ts.net"));
    assert_eq!(rw["queueConfig"]["maxSamplesPerSend"].as_u64(), Some(10_000));
    assert_eq!(spec["additionalArgs"][0]["name"].as_str(), Some("storage.remote.flush-deadline"));
    assert_eq!(doc["grafana"]["enabled"].as_bool(), Some(false));
    assert_eq!(doc["prometheus-node-exporter"]["prometheus"]["monitor"]["interval"].as_str(), Some("5s"));
    assert_eq!(doc["prometheus"]["additionalServiceMonitors"][0]["name"].as_str(), Some("scaphandre"));
}

#[test]
fn no_public_address_is_a_clear_error() {
    let err = greenflow_cluster::helm_values(&settings("", &[]), None).unwrap_err().to_string();
    assert!(err.contains("sink.public_host") && err.contains("NODENAME"), "{err}");
}

#[test]
fn extra_values_are_merged_last() {
    let doc = values(&format!(
        "{FULL}  extra_values:\n    prometheus:\n      prometheusSpec:\n        retention: 2d\n        scrapeInterval: 10s\n    \
         alertmanager:\n      enabled: false\n"
    ));
    let spec = &doc["prometheus"]["prometheusSpec"];
    assert_eq!(spec["retention"].as_str(), Some("2d"));
    assert_eq!(spec["scrapeInterval"].as_str(), Some("10s"), "user values win");
    assert_eq!(spec["remoteWrite"][0]["name"].as_str(), Some("greenflow-sink"), "ours stay");
    assert_eq!(doc["alertmanager"]["enabled"].as_bool(), Some(false));
}

/// Every key path we emit exists in the chart's values.yaml; free-form maps and lists there end the walk.
fn assert_paths_exist(ours: &Value, reference: &Value, path: &str) {
    let Some(map) = ours.as_mapping() else { return };
    let Some(reference_map) = reference.as_mapping() else { return };
    if reference_map.is_empty() {
        return;
    }
    for (key, value) in map {
        let key = key.as_str().unwrap();
        let here = format!("{path}{key}");
        let Some(reference_value) = reference_map.get(key) else {
            panic!("`{here}` is not a value of the pinned chart");
        };
        assert_paths_exist(value, reference_value, &format!("{here}."));
    }
}

#[test]
fn every_key_exists_in_the_pinned_chart_values() {
    let reference: Value =
        serde_yaml::from_str(&std::fs::read_to_string(reference_dir().join("values.yaml")).unwrap()).unwrap();
    assert_paths_exist(&values(FULL), &reference, "");
}

/// The chart's own switches under prometheusSpec, which it does not pass to the Prometheus resource.
const CHART_ONLY: [&str; 2] = ["serviceMonitorSelectorNilUsesHelmValues", "podMonitorSelectorNilUsesHelmValues"];

/// A small OpenAPI v3 validator for what the CRD uses: type, pattern, enum, properties, items, required.
fn validate(value: &Value, schema: &Value, path: &str) {
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        assert!(value.is_u64() || value.is_i64() || value.is_string(), "{path}: int or string expected");
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => {
            let text = value.as_str().unwrap_or_else(|| panic!("{path}: string expected, got {value:?}"));
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                let re = regex::Regex::new(pattern).unwrap();
                assert!(re.is_match(text), "{path}: `{text}` does not match {pattern}");
            }
            if let Some(options) = schema.get("enum").and_then(Value::as_sequence) {
                assert!(options.iter().any(|o| o.as_str() == Some(text)), "{path}: `{text}` not in {options:?}");
            }
        }
        Some("integer") => assert!(value.is_u64() || value.is_i64(), "{path}: integer expected, got {value:?}"),
        Some("boolean") => assert!(value.is_bool(), "{path}: boolean expected, got {value:?}"),
        Some("array") => {
            let items = value.as_sequence().unwrap_or_else(|| panic!("{path}: array expected"));
            for (i, item) in items.iter().enumerate() {
                validate(item, &schema["items"], &format!("{path}[{i}]"));
            }
        }
        Some("object") => {
            let map = value.as_mapping().unwrap_or_else(|| panic!("{path}: object expected, got {value:?}"));
            for required in schema.get("required").and_then(Value::as_sequence).into_iter().flatten() {
                assert!(map.contains_key(required), "{path}: `{}` is required", required.as_str().unwrap());
            }
            let properties = schema.get("properties").and_then(Value::as_mapping);
            for (key, item) in map {
                let key = key.as_str().unwrap();
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => validate(item, sub, &format!("{path}.{key}")),
                    None => match schema.get("additionalProperties") {
                        Some(additional) if additional.is_mapping() => {
                            validate(item, additional, &format!("{path}.{key}"))
                        }
                        _ => panic!("{path}: `{key}` is not a field of the Prometheus CRD"),
                    },
                }
            }
        }
        _ => {}
    }
}

#[test]
fn prometheus_spec_is_allowed_by_the_crd() {
    let crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(reference_dir().join("crd-prometheuses.yaml")).unwrap()).unwrap();
    let spec_schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let doc = values(FULL);
    let mut spec = doc["prometheus"]["prometheusSpec"].clone();
    for key in CHART_ONLY {
        spec.as_mapping_mut().unwrap().remove(key).expect("chart-only key present");
    }
    // The chart passes its `storageSpec` on as the resource's `storage` (templates/prometheus/prometheus.yaml).
    let storage = spec.as_mapping_mut().unwrap().remove("storageSpec").expect("FULL sets cluster.storage");
    spec.as_mapping_mut().unwrap().insert("storage".into(), storage);
    validate(&spec, spec_schema, "prometheusSpec");
}

/// Strings rich in what breaks YAML.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::string::string_regex(r#"[a-zA-Z0-9 "'{}\\`$#;:%()\[\]\n\t@.ü€😀\-|>&*!]{1,16}"#).unwrap(),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn hostile_strings_round_trip_or_are_refused(deployment in hostile(), server_name in hostile(), selector in hostile()) {
        let mut config = Value::Mapping(Default::default());
        config["sink"] = serde_yaml::from_str("public_host: laptop.tail1234.ts.net").unwrap();
        let mut cluster = serde_yaml::Mapping::new();
        cluster.insert("deployment".into(), deployment.clone().into());
        cluster.insert("tls_server_name".into(), server_name.clone().into());
        let mut node_selector = serde_yaml::Mapping::new();
        node_selector.insert("kubernetes.io/hostname".into(), selector.clone().into());
        cluster.insert("node_selector".into(), Value::Mapping(node_selector));
        config["cluster"] = Value::Mapping(cluster);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("greenflow.yaml"), serde_yaml::to_string(&config).unwrap()).unwrap();
        let loaded = Settings::load(None, dir.path(), vec![("HOME".to_owned(), "/h".to_owned())]);
        let Ok(settings) = loaded else {
            // Refused at load: the message names the key.
            let err = loaded.unwrap_err().to_string();
            prop_assert!(err.contains("cluster.deployment"), "{err}");
            return Ok(());
        };
        let text = greenflow_cluster::helm_values(&settings, None).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let spec = &doc["prometheus"]["prometheusSpec"];
        prop_assert_eq!(spec["externalLabels"]["greenflow_deployment"].as_str(), Some(deployment.as_str()));
        prop_assert_eq!(spec["remoteWrite"][0]["tlsConfig"]["serverName"].as_str(), Some(server_name.as_str()));
        prop_assert_eq!(spec["nodeSelector"]["kubernetes.io/hostname"].as_str(), Some(selector.as_str()));
        prop_assert_eq!(spec["remoteWrite"].as_sequence().unwrap().len(), 1);
        prop_assert_eq!(spec["externalLabels"].as_mapping().unwrap().len(), 1);
    }
}

#[test]
fn the_crd_check_catches_what_it_should() {
    let crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(reference_dir().join("crd-prometheuses.yaml")).unwrap()).unwrap();
    let spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
    let doc = values(FULL);
    let mut good = doc["prometheus"]["prometheusSpec"].clone();
    for key in CHART_ONLY {
        good.as_mapping_mut().unwrap().remove(key);
    }
    type Breakage = (&'static str, fn(&mut Value));
    let breakages: [Breakage; 4] = [
        ("bad enum", |s| s["remoteWrite"][0]["messageVersion"] = "V3".into()),
        ("bad url pattern", |s| s["remoteWrite"][0]["url"] = "ftp://x".into()),
        ("unknown field", |s| s["remoteWrite"][0]["queueConfig"]["maxSamplesPerBatch"] = 1.into()),
        ("wrong type", |s| s["replicas"] = "zero".into()),
    ];
    for (what, breakage) in breakages {
        let mut spec = good.clone();
        breakage(&mut spec);
        let schema = spec_schema.clone();
        let caught = std::panic::catch_unwind(move || validate(&spec, &schema, "prometheusSpec")).is_err();
        assert!(caught, "{what} was not caught");
    }
}

/// The Prometheus spec of `yaml`'s values, as the chart hands it to the Prometheus resource, checked against the
/// pinned CRD.
fn crd_checked_spec(yaml: &str, sink_ip: Option<std::net::IpAddr>) -> Value {
    let crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(reference_dir().join("crd-prometheuses.yaml")).unwrap()).unwrap();
    let spec_schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let text = greenflow_cluster::helm_values(&settings(yaml, &[]), sink_ip).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let reference: Value =
        serde_yaml::from_str(&std::fs::read_to_string(reference_dir().join("values.yaml")).unwrap()).unwrap();
    assert_paths_exist(&doc, &reference, "");
    let mut spec = doc["prometheus"]["prometheusSpec"].clone();
    for key in CHART_ONLY {
        spec.as_mapping_mut().unwrap().remove(key);
    }
    validate(&spec, spec_schema, "prometheusSpec");
    doc
}

const TAILNET: &str = "sink:\n  public_host: laptop.tail1234.ts.net\n";

#[test]
fn a_tailnet_name_means_a_tailscale_sidecar_with_its_proxy() {
    let doc = crd_checked_spec(TAILNET, None);
    let spec = &doc["prometheus"]["prometheusSpec"];
    let rw = &spec["remoteWrite"][0];
    assert_eq!(rw["url"].as_str(), Some("https://laptop.tail1234.ts.net/vm/api/v1/write"));
    assert_eq!(rw["proxyUrl"].as_str(), Some("http://127.0.0.1:1055"));
    let sidecars = spec["initContainers"].as_sequence().unwrap();
    assert_eq!(sidecars.len(), 1);
    let ts = &sidecars[0];
    assert_eq!(ts["name"].as_str(), Some("tailscale"));
    // A native sidecar: it outlives Prometheus' last flush at scale-down.
    assert_eq!(ts["restartPolicy"].as_str(), Some("Always"));
    let image = ts["image"].as_str().unwrap();
    assert!(image.starts_with("ghcr.io/tailscale/tailscale:v1."), "pinned by version: {image}");
    let env: std::collections::BTreeMap<&str, &Value> =
        ts["env"].as_sequence().unwrap().iter().map(|e| (e["name"].as_str().unwrap(), e)).collect();
    // cmd/containerboot/settings.go: these names, and an explicitly empty TS_KUBE_SECRET for state in memory.
    assert_eq!(env["TS_USERSPACE"]["value"].as_str(), Some("true"));
    assert_eq!(env["TS_KUBE_SECRET"]["value"].as_str(), Some(""));
    assert_eq!(env["TS_OUTBOUND_HTTP_PROXY_LISTEN"]["value"].as_str(), Some("127.0.0.1:1055"));
    assert_eq!(env["TS_HOSTNAME"]["value"].as_str(), Some("greenflow-default"));
    assert!(!env.contains_key("TS_STATE_DIR"), "state must not outlive the pod");
    assert!(!env.contains_key("TS_EXTRA_ARGS"), "no tags asked for: the key's own apply");
    let tagged =
        crd_checked_spec(&format!("{TAILNET}cluster:\n  tailscale:\n    tags: [tag:greenflow, tag:g5k]\n"), None);
    let tagged_env = tagged["prometheus"]["prometheusSpec"]["initContainers"][0]["env"].as_sequence().unwrap().clone();
    let extra = tagged_env.iter().find(|e| e["name"] == "TS_EXTRA_ARGS").unwrap();
    assert_eq!(extra["value"].as_str(), Some("--advertise-tags=tag:greenflow,tag:g5k"));
    let key = &env["TS_AUTHKEY"]["valueFrom"]["secretKeyRef"];
    assert_eq!(key["name"].as_str(), Some("greenflow-tailscale-auth"));
    assert_eq!(key["key"].as_str(), Some("TS_AUTHKEY"));
    assert!(ts["resources"]["requests"]["cpu"].is_string() && ts["resources"]["limits"]["memory"].is_string());
    assert_eq!(ts["startupProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
}

#[test]
fn funnel_and_direct_write_to_the_url_with_nothing_in_the_pod() {
    for (yaml, url) in [
        (format!("{TAILNET}cluster:\n  reach: funnel\n"), "https://laptop.tail1234.ts.net/vm/api/v1/write"),
        (
            "sink:\n  public_host: https://sink.example.org:8443\n".to_owned(),
            "https://sink.example.org:8443/vm/api/v1/write",
        ),
    ] {
        let doc = crd_checked_spec(&yaml, None);
        let spec = &doc["prometheus"]["prometheusSpec"];
        assert_eq!(spec["remoteWrite"][0]["url"].as_str(), Some(url));
        assert!(spec["remoteWrite"][0].get("proxyUrl").is_none());
        assert!(spec.get("initContainers").is_none() && spec.get("hostAliases").is_none());
        assert!(doc.get("extraManifests").is_none());
    }
}

#[test]
fn nodes_resolve_the_tailnet_name_to_the_sinks_tailnet_ip_in_the_pod() {
    let yaml = format!("{TAILNET}cluster:\n  reach: nodes\n");
    let doc = crd_checked_spec(&yaml, Some("100.101.102.103".parse().unwrap()));
    let spec = &doc["prometheus"]["prometheusSpec"];
    // The URL, the TLS name and the Host header stay the name Caddy serves; only resolution changes.
    assert_eq!(spec["remoteWrite"][0]["url"].as_str(), Some("https://laptop.tail1234.ts.net/vm/api/v1/write"));
    assert_eq!(spec["hostAliases"][0]["ip"].as_str(), Some("100.101.102.103"));
    assert_eq!(spec["hostAliases"][0]["hostnames"][0].as_str(), Some("laptop.tail1234.ts.net"));
    // A configured address wins over the one read from this machine.
    let given = format!("{yaml}  tailscale:\n    sink_ip: 100.64.0.7\n");
    let doc = crd_checked_spec(&given, Some("100.101.102.103".parse().unwrap()));
    assert_eq!(doc["prometheus"]["prometheusSpec"]["hostAliases"][0]["ip"].as_str(), Some("100.64.0.7"));
    let err = greenflow_cluster::helm_values(&settings(&yaml, &[]), None).unwrap_err().to_string();
    assert!(err.contains("cluster.reach `nodes`") && err.contains("cluster.tailscale.sink_ip"), "{err}");
}

#[test]
fn operator_writes_to_an_egress_service_with_the_tailnet_tls_name() {
    let doc = crd_checked_spec(&format!("{TAILNET}cluster:\n  reach: operator\n"), None);
    let rw = &doc["prometheus"]["prometheusSpec"]["remoteWrite"][0];
    assert_eq!(rw["url"].as_str(), Some("https://greenflow-sink.monitoring.svc.cluster.local/vm/api/v1/write"));
    assert_eq!(rw["tlsConfig"]["serverName"].as_str(), Some("laptop.tail1234.ts.net"));
    let service = &doc["extraManifests"][0];
    assert_eq!(service["kind"].as_str(), Some("Service"));
    assert_eq!(service["metadata"]["name"].as_str(), Some("greenflow-sink"));
    // cmd/k8s-operator/sts.go: the annotation; svc.go: the operator overwrites externalName.
    assert_eq!(
        service["metadata"]["annotations"]["tailscale.com/tailnet-fqdn"].as_str(),
        Some("laptop.tail1234.ts.net")
    );
    assert_eq!(service["spec"]["type"].as_str(), Some("ExternalName"));
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(443));
}

#[test]
fn a_route_that_needs_a_tailnet_name_refuses_another_address() {
    for reach in ["sidecar", "funnel", "nodes", "operator"] {
        let yaml = format!("sink:\n  public_host: https://sink.example.org\ncluster:\n  reach: {reach}\n");
        let err = greenflow_cluster::helm_values(&settings(&yaml, &[]), None).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cluster.reach `{reach}`: ")), "{err}");
        assert!(err.contains("tailnet name") && err.contains("cluster.reach: direct"), "{err}");
    }
    let yaml = "sink:\n  public_host: https://laptop.tail1234.ts.net:9443\ncluster:\n  reach: funnel\n";
    let err = greenflow_cluster::helm_values(&settings(yaml, &[]), None).unwrap_err().to_string();
    assert!(err.contains("443, 8443 and 10000"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the deployment is called, the sidecar's node name is a DNS label; a hostile configured name is
    /// refused naming its key.
    #[test]
    fn sidecar_names_are_dns_labels_or_refused(
        deployment in hostile(),
        hostname in hostile(),
        secret in hostile(),
        tag in prop_oneof![hostile(), hostile().prop_map(|t| format!("tag:{t}"))],
    ) {
        let mut config = Value::Mapping(Default::default());
        config["sink"] = serde_yaml::from_str("public_host: laptop.tail1234.ts.net").unwrap();
        let mut cluster = serde_yaml::Mapping::new();
        cluster.insert("deployment".into(), deployment.clone().into());
        config["cluster"] = Value::Mapping(cluster);
        let derived = |config: &Value| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("greenflow.yaml"), serde_yaml::to_string(config).unwrap()).unwrap();
            Settings::load(None, dir.path(), vec![("HOME".to_owned(), "/h".to_owned())])
        };
        if let Ok(settings) = derived(&config) {
            let name = greenflow_cluster::sidecar_hostname(&settings);
            prop_assert!(!name.is_empty() && name.len() <= 63, "{name}");
            prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
            prop_assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
            let text = greenflow_cluster::helm_values(&settings, None).unwrap();
            let doc: Value = serde_yaml::from_str(&text).unwrap();
            let env = &doc["prometheus"]["prometheusSpec"]["initContainers"][0]["env"];
            let hostname_env = env.as_sequence().unwrap().iter().find(|e| e["name"] == "TS_HOSTNAME").unwrap();
            prop_assert_eq!(hostname_env["value"].as_str(), Some(name.as_str()));
        }
        let mut tailscale = serde_yaml::Mapping::new();
        tailscale.insert("hostname".into(), hostname.clone().into());
        tailscale.insert("auth_key_secret".into(), secret.clone().into());
        tailscale.insert("tags".into(), Value::Sequence(vec![tag.clone().into()]));
        config["cluster"]["tailscale"] = Value::Mapping(tailscale);
        match derived(&config) {
            Ok(settings) => {
                let text = greenflow_cluster::helm_values(&settings, None).unwrap();
                let doc: Value = serde_yaml::from_str(&text).unwrap();
                let ts = &doc["prometheus"]["prometheusSpec"]["initContainers"][0];
                let env = ts["env"].as_sequence().unwrap();
                let hostname_env = env.iter().find(|e| e["name"] == "TS_HOSTNAME").unwrap();
                prop_assert_eq!(hostname_env["value"].as_str(), Some(hostname.as_str()));
                let key = env.iter().find(|e| e["name"] == "TS_AUTHKEY").unwrap();
                prop_assert_eq!(key["valueFrom"]["secretKeyRef"]["name"].as_str(), Some(secret.as_str()));
                let extra = env.iter().find(|e| e["name"] == "TS_EXTRA_ARGS").unwrap();
                let expected = format!("--advertise-tags={tag}");
                prop_assert_eq!(extra["value"].as_str(), Some(expected.as_str()));
                // containerboot splits TS_EXTRA_ARGS on blanks: one argument, whatever the tag.
                prop_assert_eq!(extra["value"].as_str().unwrap().split_whitespace().count(), 1);
            }
            Err(err) => {
                let err = err.to_string();
                prop_assert!(
                    err.contains("cluster.tailscale.hostname") || err.contains("cluster.tailscale.auth_key_secret")
                        || err.contains("cluster.tailscale.tags") || err.contains("cluster.deployment"),
                    "{}", err
                );
            }
        }
    }
}

#[test]
fn each_route_describes_itself_for_cluster_status() {
    let cases = [
        (
            TAILNET.to_owned(),
            "sidecar (default for a tailnet name): https://laptop.tail1234.ts.net/vm/api/v1/write through the Tailscale sidecar's proxy http://127.0.0.1:1055 (node greenflow-default)",
        ),
        (
            format!("{TAILNET}cluster:\n  reach: funnel\n"),
            "funnel (cluster.reach): https://laptop.tail1234.ts.net/vm/api/v1/write over the internet",
        ),
        (
            format!("{TAILNET}cluster:\n  reach: nodes\n  tailscale:\n    sink_ip: 100.64.0.7\n"),
            "nodes (cluster.reach): https://laptop.tail1234.ts.net/vm/api/v1/write over the nodes' tailnet, laptop.tail1234.ts.net -> 100.64.0.7",
        ),
        (
            format!("{TAILNET}cluster:\n  reach: operator\n"),
            "operator (cluster.reach): https://greenflow-sink.monitoring.svc.cluster.local/vm/api/v1/write through the Tailscale operator's egress Service greenflow-sink",
        ),
        (
            "sink:\n  public_host: https://sink.example.org\n".to_owned(),
            "direct (default for an address that is not a tailnet name): https://sink.example.org/vm/api/v1/write straight",
        ),
    ];
    for (yaml, expected) in cases {
        let route = greenflow_cluster::route(&settings(&yaml, &[]), None).unwrap();
        assert!(route.describe().starts_with(expected), "{}\nexpected: {expected}", route.describe());
    }
}
