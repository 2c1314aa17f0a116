//! A scratch VictoriaMetrics for reports from archives: started on a free loopback port over a temporary
//! directory, given the archives with greenflow's own import (checked file for file), queried, then stopped and
//! removed. Its flags are the sink's that shape query answers (deduplication, retention), so an archive gives the
//! numbers the sink gave.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use greenflow_data::{Manifest, VmEndpoint};
use greenflow_sink::SinkClient;
use greenflow_sink::supervisor::{ProcessSpec, Supervisor};

use crate::error::ReportError;

/// How long the scratch VictoriaMetrics may take to answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running scratch VictoriaMetrics.
pub struct ScratchVm {
    supervisor: Option<Supervisor>,
    dir: tempfile::TempDir,
    base: String,
}

impl std::fmt::Debug for ScratchVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchVm").field("base", &self.base).field("dir", &self.dir.path()).finish()
    }
}

impl ScratchVm {
    /// Starts `binary` (a VictoriaMetrics single-node) and waits until it answers.
    pub async fn start(binary: &Path) -> Result<Self, ReportError> {
        let dir = tempfile::Builder::new()
            .prefix("greenflow-report-")
            .tempdir()
            .map_err(ReportError::write(&std::env::temp_dir()))?;
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(ReportError::write(dir.path()))?
            .port();
        let log: PathBuf = dir.path().join("victoria-metrics.log");
        let spec = ProcessSpec {
            name: "victoria-metrics (report scratch)".into(),
            program: binary.to_owned(),
            args: vec![
                format!("-httpListenAddr=127.0.0.1:{port}").into(),
                format!("-storageDataPath={}", dir.path().join("data").display()).into(),
                // Archived samples may be years old: keep whatever they are.
                "-retentionPeriod=100y".into(),
                // As the sink: one sample per series and millisecond.
                "-dedup.minScrapeInterval=1ms".into(),
                "-search.latencyOffset=0s".into(),
            ],
            env: Vec::new(),
            log_file: log.clone(),
            stop_grace: Duration::from_secs(10),
        };
        let supervisor = Supervisor::start(vec![spec]).await?;
        let base = format!("http://127.0.0.1:{port}");
        let client = SinkClient::new(&base, None);
        let started = Instant::now();
        while client.health().await.is_err() {
            if started.elapsed() > READY_TIMEOUT || supervisor.startup_failure().is_some() {
                supervisor.stop().await;
                return Err(ReportError::ScratchNotReady { seconds: READY_TIMEOUT.as_secs(), log });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        supervisor.mark_started();
        Ok(Self { supervisor: Some(supervisor), dir, base })
    }

    /// Loads a greenflow archive (verified first, then checked against what the scratch holds).
    pub async fn load(&self, archive: &Path) -> Result<Manifest, ReportError> {
        let (manifest, _) = greenflow_data::import(archive, &VmEndpoint::new(&self.base, None), false).await?;
        // What was just written is searchable now rather than at the next periodic flush.
        self.client().force_flush().await?;
        Ok(manifest)
    }

    /// A query client of the scratch.
    pub fn client(&self) -> SinkClient {
        SinkClient::new(&self.base, None)
    }

    /// Stops it; the temporary directory goes with `self`.
    pub async fn stop(mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.stop().await;
        }
    }
}
