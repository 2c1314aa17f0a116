//! The test harness: each test gets a project folder with its own greenflow.yaml (free ports on 127.0.0.1), its own
//! data and state directories, and a command for the built binary. Dropping it stops whatever sink it started.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free port on 127.0.0.1, below the kernel's ephemeral range (32768 and up) so that outgoing connections of
/// parallel tests cannot take it between this check and the bind.
///
/// Ports are drawn from one sequence per process: a seed fixed at the first call, stepped by a prime that shares
/// no factor with the range's size, so no port is handed out twice by one test (a port handed out is not yet bound,
/// so the bind check alone could not tell).
pub fn free_port() -> u16 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    const RANGE: u32 = 12_000;
    static SEED: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        std::process::id().wrapping_mul(7919) ^ nanos
    });
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < RANGE, "no free port left in 20000..32000");
        let port = 20_000 + ((seed % RANGE + n * 104_729 % RANGE) % RANGE) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The directory of the program set under test (`GREENFLOW_TEST_PROGRAMS`, see `scripts/test`), if one is set.
pub fn test_programs_dir() -> Option<PathBuf> {
    std::env::var_os("GREENFLOW_TEST_PROGRAMS").filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// The PATH greenflow gets in tests: the program set under test first, then this process' PATH without any
/// directory that holds a Grafana (tests give Grafana as a stand-in by path, so that none depends on whether the
/// machine has one: `nix develop` puts the real one on PATH).
pub fn test_path() -> std::ffi::OsString {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = test_programs_dir()
        .into_iter()
        .chain(std::env::split_paths(&inherited))
        .filter(|dir| !["grafana", "grafana-server"].iter().any(|name| dir.join(name).is_file()));
    std::env::join_paths(dirs).unwrap()
}

/// Finds a program the way greenflow will in tests (on [`test_path`]).
pub fn which_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&test_path()).map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// The version a program reports (first line of `--version`, or `version` for Caddy).
pub fn program_version_output(name: &str, args: &[&str]) -> String {
    let program = which_program(name).unwrap_or_else(|| panic!("{name} is needed for this test"));
    let output = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or_default().trim().to_owned()
}

/// The flag that starts the Prometheus under test in agent mode (`--agent` from 3.0, before that
/// `--enable-feature=agent`), chosen by greenflow's own version table.
pub fn prometheus_agent_flag() -> String {
    use greenflow_sink::{Program, versions};
    let binary = which_program("prometheus").expect("prometheus is needed for this test (scripts/install-deps)");
    versions::prometheus_agent_flag(&versions::detect(Program::Prometheus, &binary)).to_owned()
}

/// The ports of one test's sink.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub vm: u16,
    pub admin: u16,
    pub grafana: u16,
}

/// One test's project folder.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    extra_env: Vec<(String, String)>,
}

impl Project {
    /// A project with a greenflow.yaml that puts every port on a free one.
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// Like [`Project::new`], with extra YAML appended under the top level (must not repeat `sink:`).
    pub fn with_config(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports { http: free_port(), vm: free_port(), admin: free_port(), grafana: free_port() };
        let config = format!(
            "sink:\n  http_port: {}\n  victoria_metrics:\n    port: {}\n  caddy:\n    admin_port: {}\n  grafana:\n    port: {}\n{extra}",
            ports.http, ports.vm, ports.admin, ports.grafana
        );
        std::fs::write(dir.path().join("greenflow.yaml"), config).unwrap();
        Self { dir, ports, extra_env: Vec::new() }
    }

    /// Adds a variable to every command's environment.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path().join("xdg-data/greenflow")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("xdg-state/greenflow")
    }

    /// A command for the built binary, run in the project folder with a clean greenflow environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenflow"));
        cmd.args(args)
            .current_dir(self.path())
            .env("XDG_DATA_HOME", self.path().join("xdg-data"))
            .env("XDG_STATE_HOME", self.path().join("xdg-state"))
            .env("HOME", self.path())
            .env("PATH", test_path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for name in [
            "GREENFLOW_SINK_PASSWORD",
            "GRAFANA_ADMIN_PASSWORD",
            "GREENFLOW_CONFIG",
            "NODENAME",
            "TAILSCALE_DOMAIN",
            "EXPERIMENT_STORAGE_URL",
            "TS_AUTHKEY",
            "TAILSCALE_AUTH_KEY",
        ] {
            cmd.env_remove(name);
        }
        for (name, value) in &self.extra_env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "greenflow {args:?} failed:\n{}", describe(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Starts the sink in the background and waits until it is healthy.
    pub fn sink_up(&self) {
        let output = self.run(&["sink", "up", "--detach"]);
        if !output.status.success() {
            let mut logs = String::new();
            if let Ok(entries) = std::fs::read_dir(self.state_dir().join("sink/logs")) {
                for entry in entries.flatten() {
                    logs += &format!(
                        "--- {}\n{}\n",
                        entry.path().display(),
                        std::fs::read_to_string(entry.path()).unwrap_or_default()
                    );
                }
            }
            panic!("sink up --detach failed:\n{}\n{logs}", describe(&output));
        }
    }

    /// The sink's URLs and credentials.
    pub fn urls(&self) -> Value {
        serde_json::from_str(&self.ok(&["sink", "url", "--json", "--show-password"])).unwrap()
    }

    /// The sink's password.
    pub fn password(&self) -> String {
        self.urls()["password"].as_str().unwrap().to_owned()
    }

    /// The JSON state file of the running sink.
    pub fn sink_state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_dir().join("sink/sink.json")).unwrap()).unwrap()
    }

    /// An instant query through Caddy with the right credentials.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let urls = self.urls();
        let client = reqwest::blocking::Client::new();
        let _ = client
            .get(format!("{}/internal/force_flush", urls["query_url"].as_str().unwrap()))
            .basic_auth("greenflow", Some(urls["password"].as_str().unwrap()))
            .send();
        let response: Value = client
            .get(format!("{}/api/v1/query", urls["query_url"].as_str().unwrap()))
            .query(&[("query", promql)])
            .basic_auth("greenflow", Some(urls["password"].as_str().unwrap()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(response["status"], "success", "{response}");
        response["data"]["result"].as_array().unwrap().clone()
    }

    /// Every series matching `selector` with its samples, through Caddy (`/api/v1/export`, one JSON object a line).
    pub fn export(&self, selector: &str) -> Vec<Value> {
        let urls = self.urls();
        let client = reqwest::blocking::Client::new();
        let base = urls["query_url"].as_str().unwrap();
        let password = urls["password"].as_str().unwrap();
        let _ = client.get(format!("{base}/internal/force_flush")).basic_auth("greenflow", Some(password)).send();
        let text = client
            .get(format!("{base}/api/v1/export"))
            .query(&[("match[]", selector)])
            .basic_auth("greenflow", Some(password))
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// All run records, newest first.
    pub fn runs(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok(&["runs", "list", "--json"])).unwrap().as_array().unwrap().clone()
    }

    /// Polls `query` until it returns something, or fails after `timeout`.
    pub fn wait_for_series(&self, promql: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(promql);
            if !result.is_empty() {
                return result;
            }
            assert!(Instant::now() < deadline, "no result for {promql} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Starts a long-running command with piped output.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.cmd(&["sink", "down"]).output();
        // A run's stand-in cluster outlives a greenflow that was killed (so that `runs recover` can drain it): a test
        // that failed half-way must not leave it behind.
        for pid in pids_mentioning(&self.state_dir().join("local-cluster").to_string_lossy()) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").map(|(_, rest)| rest).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of every process whose command line mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
            && alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until no process mentions `needle`, or fails.
pub fn assert_no_process_mentions(needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = pids_mentioning(needle);
        if pids.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes still running for {needle}: {pids:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A long-running greenflow command whose stderr is collected as it comes.
pub struct Running {
    pub child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Project {
    /// Starts a long-running command, collecting its stderr in the background.
    pub fn start(&self, args: &[&str]) -> Running {
        let mut child = self.cmd(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        let mut pipe = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running { child, stderr, reader: Some(reader) }
    }
}

impl Running {
    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; fails if the process exits first or the time runs out.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited ({status}) before printing {needle:?}:\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {timeout:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the exit; returns the status and the whole stderr.
    pub fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "did not exit within {timeout:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.stderr())
    }

    /// Sends a signal and waits for the exit; returns the status and the whole stderr.
    pub fn signal_and_wait(
        self,
        signal: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> (std::process::ExitStatus, String) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
        self.wait_exit(timeout)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a file exists.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear within {timeout:?}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stand-in `grafana` (Grafana cannot be installed on the test machines): a small Python HTTP server that checks
/// the command line Grafana gets, reads the generated grafana.ini for its port as Grafana would, and answers
/// `/api/health`.
const FAKE_GRAFANA: &str = r#"
import http.server, json, os, re, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("grafana version 12.0.0-fake")
    sys.exit(0)
assert args[0] == "server", args
home = args[args.index("--homepath") + 1]
config = args[args.index("--config") + 1]
assert os.path.isfile(os.path.join(home, "conf", "defaults.ini")), home
ini = open(config).read()
port = int(re.search(r"^http_port = (\d+)$", ini, re.M).group(1))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/api/health", "/grafana/api/health"):
            body = json.dumps({"database": "ok", "version": "12.0.0-fake", "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"#;

/// Writes the stand-in Grafana into a Grafana home under `dir` (with `conf/defaults.ini`); returns the binary.
pub fn fake_grafana(dir: &Path) -> std::path::PathBuf {
    let home = dir.join("grafana-home");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    std::fs::create_dir_all(home.join("conf")).unwrap();
    std::fs::write(home.join("conf/defaults.ini"), "[server]\n").unwrap();
    let binary = home.join("bin/grafana");
    // The interpreter by absolute path: the Nix build sandbox has no /usr/bin/env.
    let python = which_program("python3").expect("python3 is needed for the Grafana stand-in");
    std::fs::write(&binary, format!("#!{}\n{FAKE_GRAFANA}", python.display())).unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    binary
}
