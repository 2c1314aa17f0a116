//! Ctrl-C and SIGTERM as a value every waiting loop can select on.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Counts the stop requests (SIGINT, SIGTERM) received so far.
#[derive(Debug, Clone)]
pub struct StopRequests {
    count: watch::Receiver<u32>,
}

impl StopRequests {
    /// Installs the handlers. With `ignore_hangup`, SIGHUP is swallowed (a detached sink outlives its terminal).
    pub fn install(ignore_hangup: bool) -> anyhow::Result<Self> {
        let (tx, count) = watch::channel(0u32);
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = if ignore_hangup { Some(signal(SignalKind::hangup())?) } else { None };
        tokio::spawn(async move {
            loop {
                let hang = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = interrupt.recv() => tx.send_modify(|n| *n += 1),
                    _ = terminate.recv() => tx.send_modify(|n| *n += 1),
                    _ = hang => tracing::info!("ignoring SIGHUP: the sink runs detached"),
                }
            }
        });
        Ok(Self { count })
    }

    /// A receiver of the count, for the run lifecycle.
    pub fn receiver(&self) -> watch::Receiver<u32> {
        self.count.clone()
    }

    /// Resolves once at least `n` stop requests have arrived.
    pub async fn wait(&mut self, n: u32) {
        let _ = self.count.wait_for(|count| *count >= n).await;
    }
}
