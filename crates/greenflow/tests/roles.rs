//! Least privilege on real Caddy and VictoriaMetrics: the writer (the cluster's credential) may only remote-write;
//! nobody deletes, snapshots or reloads through the sink; VictoriaMetrics' own port wants a key only greenflow holds;
//! Caddy's admin API is not on a TCP port.

mod common;

use common::Project;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

struct Sink {
    client: Client,
    base: String,
    vm: String,
    owner: (String, String),
    writer: (String, String),
}

impl Sink {
    fn of(project: &Project) -> Self {
        let urls = project.urls();
        let text = |key: &str| urls[key].as_str().unwrap_or_else(|| panic!("{key} in {urls}")).to_owned();
        Self {
            client: Client::new(),
            base: text("query_url"),
            vm: format!("http://127.0.0.1:{}", project.ports.vm),
            owner: (text("username"), text("password")),
            writer: (text("writer_username"), text("writer_password")),
        }
    }

    fn status(request: RequestBuilder) -> u16 {
        request.send().unwrap().status().as_u16()
    }

    fn as_(&self, who: &(String, String), request: RequestBuilder) -> u16 {
        Self::status(request.basic_auth(&who.0, Some(&who.1)))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    fn import(&self, who: &(String, String), line: &str) -> u16 {
        self.as_(who, self.post("/api/v1/import").body(line.to_owned()))
    }

    fn count(&self, selector: &str) -> usize {
        let _ = self.as_(&self.owner, self.get("/internal/force_flush"));
        let body: Value = self
            .get("/api/v1/export")
            .query(&[("match[]", selector)])
            .basic_auth(&self.owner.0, Some(&self.owner.1))
            .send()
            .unwrap()
            .text()
            .map(|t| Value::from(t.lines().count()))
            .unwrap();
        body.as_u64().unwrap() as usize
    }
}

const SERIES: &str =
    r#"{"metric":{"__name__":"roles_test","greenflow_run":"r1"},"values":[1],"timestamps":[1764547200000]}"#;

#[test]
fn the_writer_may_only_remote_write() {
    let project = Project::new();
    project.sink_up();
    let sink = Sink::of(&project);
    assert_ne!(sink.writer.0, sink.owner.0);
    assert_ne!(sink.writer.1, sink.owner.1);

    // Remote write: the writer passes authentication (an empty request is then VictoriaMetrics' to judge).
    let write = || sink.post("/api/v1/write").header("Content-Encoding", "snappy").body(Vec::new());
    assert_ne!(sink.as_(&sink.writer, write()), 401, "the writer may remote-write");
    assert_ne!(sink.as_(&sink.owner, write()), 401, "the owner may remote-write");
    assert_eq!(Sink::status(write()), 401, "nobody without credentials");

    // Everything else is the owner's.
    assert_eq!(sink.import(&sink.owner, SERIES), 204);
    assert_eq!(sink.import(&sink.writer, SERIES), 401, "the writer may not import");
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/export?match[]=roles_test",
        "/api/v1/series?match[]=up",
        "/internal/force_flush",
    ] {
        assert_eq!(sink.as_(&sink.writer, sink.get(path)), 401, "writer GET {path}");
        assert_eq!(sink.as_(&sink.owner, sink.get(path)), 200, "owner GET {path}");
    }
    assert_eq!(sink.count("roles_test"), 1);
}

#[test]
fn the_reader_may_only_query() {
    let project = Project::new();
    project.sink_up();
    let sink = Sink::of(&project);
    let password = std::fs::read_to_string(project.data_dir().join("secrets/sink-reader-password")).unwrap();
    let reader = ("greenflow-reader".to_owned(), password.trim().to_owned());
    assert_eq!(sink.import(&sink.owner, SERIES), 204);
    let _ = sink.count("roles_test");
    // What Grafana's Prometheus datasource asks for.
    for path in [
        "/api/v1/query?query=roles_test",
        "/api/v1/query_range?query=roles_test&start=1764547100&end=1764547300&step=15",
        "/api/v1/series?match[]=roles_test",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/api/v1/status/buildinfo",
    ] {
        assert_eq!(sink.as_(&reader, sink.get(path)), 200, "reader GET {path}");
    }
    // Nothing that copies, writes or changes data.
    for path in
        ["/api/v1/export?match[]=roles_test", "/api/v1/export/native?match[]=roles_test", "/internal/force_flush"]
    {
        assert_eq!(sink.as_(&reader, sink.get(path)), 401, "reader GET {path}");
    }
    assert_eq!(sink.import(&reader, SERIES), 401, "the reader may not import");
    let write = sink.post("/api/v1/write").header("Content-Encoding", "snappy").body(Vec::new());
    assert_eq!(sink.as_(&reader, write), 401, "the reader may not remote-write");
    let delete = sink.post("/api/v1/admin/tsdb/delete_series").query(&[("match[]", "roles_test")]);
    assert_eq!(sink.as_(&reader, delete), 403, "admin endpoints are not routed");
    assert_eq!(sink.count("roles_test"), 1);
}

#[test]
fn nobody_deletes_snapshots_or_reloads_through_the_sink_or_without_greenflows_key() {
    let project = Project::new();
    project.sink_up();
    let sink = Sink::of(&project);
    assert_eq!(sink.import(&sink.owner, SERIES), 204);
    assert_eq!(sink.count(r#"{greenflow_run="r1"}"#), 1);

    let admin = [
        "/api/v1/admin/tsdb/delete_series?match[]={greenflow_run=\"r1\"}",
        "/snapshot/create",
        "/snapshot/list",
        "/snapshot/delete_all",
        "/internal/force_merge",
        "/internal/resetRollupResultCache",
        "/-/reload",
        "/flags",
        "/debug/pprof/",
    ];
    for path in admin {
        for who in [&sink.writer, &sink.owner] {
            let status = sink.as_(who, sink.post(path));
            assert!(status == 403 || status == 401, "{} POST {path} through the sink: {status}", who.0);
        }
    }

    // VictoriaMetrics' own port: the admin endpoints want the key (400/401/422 by release, never success).
    let direct = |path: &str| Sink::status(sink.client.post(format!("{}{path}", sink.vm)));
    for path in [
        "/api/v1/admin/tsdb/delete_series?match[]={greenflow_run=\"r1\"}",
        "/snapshot/create",
        "/internal/force_merge",
        "/internal/resetRollupResultCache",
        "/flags",
    ] {
        let status = direct(path);
        assert!(!(200..300).contains(&status), "POST {path} on VictoriaMetrics' port without the key: {status}");
    }
    // `/-/reload` has a key from VictoriaMetrics 1.97 on (`-reloadAuthKey`). Before it, the endpoint is open on its
    // port, but it only re-reads `-promscrape.config`, which greenflow never sets: there is nothing to reload.
    let state = project.sink_state();
    let vm = &state["components"][0];
    assert_eq!(vm["name"], "victoria-metrics");
    let text = vm["version"].as_str().unwrap();
    // "1.79.5", or ">=1.145.0 by its -help flags" for a build that does not say its version.
    let number: String =
        text.chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let version: Vec<u64> = number.split('.').take(2).map(|part| part.parse().expect(text)).collect();
    let vm_cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", vm["pid"])).unwrap()).into_owned();
    let reload = direct("/-/reload");
    if version[0] > 1 || version[1] >= 97 {
        assert!(
            !(200..300).contains(&reload),
            "POST /-/reload on VictoriaMetrics {version:?} without the key: {reload}"
        );
    } else {
        assert!(!vm_cmdline.contains("promscrape.config"), "a scrape config to reload: {vm_cmdline}");
    }
    assert_eq!(sink.count(r#"{greenflow_run="r1"}"#), 1, "the run's data is still there");

    // greenflow holds the key (0600 in the data directory): with it the same call works.
    let key_file = project.data_dir().join("secrets/victoria-metrics-admin-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the key is private");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let with_key = sink
        .client
        .post(format!("{}/snapshot/list", sink.vm))
        .query(&[("authKey", key.trim())])
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(with_key, 200, "the key opens the snapshot list");

    // The key is not on VictoriaMetrics' command line, which every local user can read.
    assert!(!vm_cmdline.contains(key.trim()), "the admin key is on the command line");
}

#[test]
fn caddys_admin_api_is_a_private_unix_socket() {
    let project = Project::new();
    project.sink_up();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", project.ports.admin)).is_err(),
        "something answers on the old admin port"
    );
    let dir = project.state_dir().join("sink/caddy-admin");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the socket's directory is the owner's only");
    let socket = dir.join("admin.sock");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&std::fs::metadata(&socket).unwrap().file_type()));
    // It is Caddy's admin API: its config is there (for this user only). Caddy 2.6 allows only an empty Host on a
    // socket (HTTP/1.0 may send none), later releases `localhost` as well.
    let ask = |request: &[u8]| {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let answers = [ask(b"GET /config/ HTTP/1.0\r\n\r\n"), ask(b"GET /config/ HTTP/1.0\r\nHost: localhost\r\n\r\n")];
    assert!(
        answers.iter().any(|a| a.starts_with("HTTP/1.0 200") && a.contains("\"apps\"")),
        "{:?}",
        answers.iter().map(|a| &a[..a.len().min(120)]).collect::<Vec<_>>()
    );
}
