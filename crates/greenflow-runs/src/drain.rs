//! Reading a Prometheus' remote-write queue from its own `/metrics` (which an agent serves too), and deciding whether
//! a run's samples have all been sent.
//!
//! Prometheus 3.7 replaced the global `prometheus_remote_storage_highest_timestamp_in_seconds` with the per-queue
//! `prometheus_remote_storage_queue_highest_timestamp_seconds`; both are read, the per-queue one preferred.

use std::collections::BTreeMap;

/// The remote-write figures of one queue (`remote_name`), from one scrape of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct QueueMetrics {
    /// Newest sample timestamp that entered the queue (seconds since the epoch); 0 before any.
    pub highest_timestamp: f64,
    /// Newest sample timestamp sent successfully; 0 before any.
    pub highest_sent_timestamp: f64,
    /// Samples waiting in the queue.
    pub samples_pending: f64,
    /// Samples that failed with a non-recoverable error (a 401, say): lost.
    pub samples_failed: f64,
    /// Samples dropped (relabelling, age limit): never sent.
    pub samples_dropped: f64,
    /// Samples sent.
    pub samples_sent: f64,
    /// Samples that entered remote storage, all queues (`prometheus_remote_storage_samples_in_total`; deprecated in
    /// newer Prometheus, so optional).
    #[serde(default)]
    pub samples_in: Option<f64>,
}

impl QueueMetrics {
    /// The queues of several Prometheus pods (shards, replicas) as one: the counts add up, and the newest
    /// timestamps are the furthest-behind pod's, so "sent past the end" holds only once every queue has sent past
    /// it. `None` for no queue.
    pub fn combine(queues: &[QueueMetrics]) -> Option<QueueMetrics> {
        let first = queues.first()?;
        let min = |f: fn(&QueueMetrics) -> f64| queues.iter().map(f).fold(f64::INFINITY, f64::min);
        let sum = |f: fn(&QueueMetrics) -> f64| queues.iter().map(f).sum::<f64>();
        Some(QueueMetrics {
            highest_timestamp: min(|q| q.highest_timestamp),
            highest_sent_timestamp: min(|q| q.highest_sent_timestamp),
            samples_pending: sum(|q| q.samples_pending),
            samples_failed: sum(|q| q.samples_failed),
            samples_dropped: sum(|q| q.samples_dropped),
            samples_sent: sum(|q| q.samples_sent),
            samples_in: first.samples_in.map(|_| queues.iter().filter_map(|q| q.samples_in).sum()),
        })
    }
}

/// Why metrics text could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainMetricsError {
    /// The queue does not appear in the metrics: wrong name, or no remote write configured.
    #[error("no remote-write queue `{remote_name}` in Prometheus' metrics (queues seen: {seen})")]
    NoQueue {
        /// The queue asked for.
        remote_name: String,
        /// The queues that were there.
        seen: String,
    },
}

/// One parsed sample line: name, labels, value.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    // A quoted value with \\, \" and \n escapes.
                    if chars.next().map(|(_, q)| q) != Some('"') {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        rest = &body[end? + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// Whether a Prometheus' `/metrics` shows its configuration loaded in this process: the last reload succeeded
/// (`prometheus_config_last_reload_successful 1`) at or after the process started (both on the pod's own clock, so
/// no clock skew enters). `None` when it does not say. A run scales up from zero pods, so a process that loaded
/// its configuration runs with the run's external labels.
pub fn config_loaded(text: &str) -> Option<bool> {
    let (mut successful, mut reloaded, mut started) = (None, None, None);
    for (name, _, value) in text.lines().filter_map(parse_line) {
        match name {
            "prometheus_config_last_reload_successful" => successful = Some(value),
            "prometheus_config_last_reload_success_timestamp_seconds" => reloaded = Some(value),
            "process_start_time_seconds" => started = Some(value),
            _ => {}
        }
    }
    match (successful?, reloaded, started) {
        (s, _, _) if s != 1.0 => Some(false),
        // The start time is read off /proc in clock ticks; a second of slack covers its rounding.
        (_, Some(reloaded), Some(started)) => Some(reloaded + 1.0 >= started),
        _ => Some(true),
    }
}

/// Extracts queue `remote_name`'s figures from `/metrics` text.
pub fn parse_queue_metrics(text: &str, remote_name: &str) -> Result<QueueMetrics, DrainMetricsError> {
    let mut metrics = QueueMetrics::default();
    let mut found = false;
    let mut global_highest = None;
    let mut queue_highest = None;
    let mut seen = std::collections::BTreeSet::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let Some(short) = name.strip_prefix("prometheus_remote_storage_") else { continue };
        if short == "highest_timestamp_in_seconds" {
            global_highest = Some(value);
            continue;
        }
        if short == "samples_in_total" && labels.is_empty() {
            metrics.samples_in = Some(value);
            continue;
        }
        let Some(queue) = labels.get("remote_name") else { continue };
        seen.insert(queue.clone());
        if queue != remote_name {
            continue;
        }
        found = true;
        match short {
            "queue_highest_timestamp_seconds" => queue_highest = Some(value),
            "queue_highest_sent_timestamp_seconds" => metrics.highest_sent_timestamp = value,
            "samples_pending" => metrics.samples_pending = value,
            "samples_failed_total" => metrics.samples_failed = value,
            "samples_dropped_total" => metrics.samples_dropped = value,
            "samples_total" => metrics.samples_sent = value,
            _ => {}
        }
    }
    if !found {
        return Err(DrainMetricsError::NoQueue {
            remote_name: remote_name.to_owned(),
            seen: if seen.is_empty() { "none".into() } else { seen.into_iter().collect::<Vec<_>>().join(", ") },
        });
    }
    metrics.highest_timestamp = queue_highest.or(global_highest).unwrap_or(0.0);
    Ok(metrics)
}

/// Where a run's drain stands, comparing the queue at the run's start and now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DrainState {
    /// Everything up to the end was sent and nothing was lost.
    Drained,
    /// Samples up to the end are still waiting (the sink is slow or down).
    Pending {
        /// Samples in the queue.
        samples_pending: f64,
        /// Seconds between the run's end and the newest sample sent.
        behind_seconds: f64,
    },
    /// Samples were lost during the run (failed or dropped counters grew).
    Lossy {
        /// Samples that failed for good (e.g. 401).
        failed: f64,
        /// Samples dropped.
        dropped: f64,
        /// Whether every sample up to the end has left the queue (sent, failed or dropped): nothing more will come.
        settled: bool,
    },
}

/// Decides the drain: losses first (they never heal), then whether everything up to `end` (seconds since the
/// epoch) was sent.
///
/// "Sent up to the end" needs more than the newest sent timestamp: with several shards one can be ahead of another.
/// An empty queue proves it, but a Prometheus that keeps scraping after the end refills the queue before every send
/// (scrape interval and batch deadline alike), so the queue may never be seen empty. `in_at_end` (the queue input
/// counter read at or after the end) proves it too: once sent + failed + dropped reach it, every sample that
/// entered before the end has left the queue.
pub fn drain_state(at_start: &QueueMetrics, now: &QueueMetrics, end: f64, in_at_end: Option<f64>) -> DrainState {
    let failed = (now.samples_failed - at_start.samples_failed).max(0.0);
    let dropped = (now.samples_dropped - at_start.samples_dropped).max(0.0);
    let processed = now.samples_sent + now.samples_failed + now.samples_dropped;
    let older_ones_left = now.samples_pending == 0.0 || in_at_end.is_some_and(|entered| processed >= entered);
    if failed > 0.0 || dropped > 0.0 {
        let entered = now.highest_timestamp.max(now.highest_sent_timestamp) >= end;
        return DrainState::Lossy { failed, dropped, settled: entered && older_ones_left };
    }
    if now.highest_sent_timestamp >= end && older_ones_left {
        DrainState::Drained
    } else {
        DrainState::Pending {
            samples_pending: now.samples_pending,
            behind_seconds: (end - now.highest_sent_timestamp).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_loaded_in_this_process_is_told_apart_from_a_failed_or_missing_one() {
        // As Prometheus 3.5 prints them (`config/reload.go`, `prometheus_config_*`; the process collector).
        let loaded = "# TYPE prometheus_config_last_reload_successful gauge\n\
                      prometheus_config_last_reload_successful 1\n\
                      prometheus_config_last_reload_success_timestamp_seconds 1.7647488e+09\n\
                      process_start_time_seconds 1.76474879987e+09\n";
        assert_eq!(config_loaded(loaded), Some(true));
        let failed = loaded.replace("successful 1", "successful 0");
        assert_eq!(config_loaded(&failed), Some(false));
        // A reload stamped before the process started is another process' (a proxy that mixes pods, say).
        let stale = loaded.replace("1.7647488e+09", "1.7647000e+09");
        assert_eq!(config_loaded(&stale), Some(false));
        assert_eq!(config_loaded("prometheus_remote_storage_samples_pending 0\n"), None);
    }

    #[test]
    fn several_queues_are_drained_only_when_each_is() {
        let queue = |sent: f64, pending: f64, failed: f64| QueueMetrics {
            highest_timestamp: sent + 1.0,
            highest_sent_timestamp: sent,
            samples_pending: pending,
            samples_failed: failed,
            samples_sent: 100.0,
            ..QueueMetrics::default()
        };
        assert_eq!(QueueMetrics::combine(&[]), None);
        let both = QueueMetrics::combine(&[queue(110.0, 0.0, 1.0), queue(95.0, 40.0, 2.0)]).unwrap();
        assert_eq!((both.highest_sent_timestamp, both.samples_pending, both.samples_failed), (95.0, 40.0, 3.0));
        assert_eq!(both.samples_sent, 200.0);
        let start = QueueMetrics::default();
        assert!(matches!(drain_state(&start, &both, 100.0, None), DrainState::Lossy { .. }));
        let clean = QueueMetrics::combine(&[queue(110.0, 0.0, 0.0), queue(95.0, 0.0, 0.0)]).unwrap();
        assert!(matches!(drain_state(&start, &clean, 100.0, None), DrainState::Pending { .. }), "one shard behind");
        let done = QueueMetrics::combine(&[queue(110.0, 0.0, 0.0), queue(101.0, 0.0, 0.0)]).unwrap();
        assert_eq!(drain_state(&start, &done, 100.0, None), DrainState::Drained);
    }

    /// As Prometheus 2.42 (agent mode) prints it, read off the real binary.
    const V2: &str = r#"# HELP prometheus_remote_storage_highest_timestamp_in_seconds Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.
# TYPE prometheus_remote_storage_highest_timestamp_in_seconds gauge
prometheus_remote_storage_highest_timestamp_in_seconds 1.795633755e+09
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name="sinkq",url="http://127.0.0.1:29428/api/v1/write"} 1.795633754e+09
prometheus_remote_storage_samples_pending{remote_name="sinkq",url="http://127.0.0.1:29428/api/v1/write"} 0
prometheus_remote_storage_samples_failed_total{remote_name="sinkq",url="http://127.0.0.1:29428/api/v1/write"} 0
prometheus_remote_storage_samples_dropped_total{remote_name="sinkq",url="http://127.0.0.1:29428/api/v1/write"} 0
prometheus_remote_storage_samples_total{remote_name="sinkq",url="http://127.0.0.1:29428/api/v1/write"} 1288
prometheus_remote_storage_samples_in_total 1288
"#;

    /// As Prometheus >= 3.7 prints it: the per-queue highest timestamp, and another queue beside ours.
    const V3: &str = r#"prometheus_remote_storage_queue_highest_timestamp_seconds{remote_name="greenflow-sink",url="https://x/vm/api/v1/write"} 1.7e+09
prometheus_remote_storage_queue_highest_timestamp_seconds{remote_name="other",url="https://y"} 1.9e+09
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name="greenflow-sink",url="https://x/vm/api/v1/write"} 1.69999999e+09
prometheus_remote_storage_samples_pending{remote_name="greenflow-sink",url="https://x/vm/api/v1/write"} 512
prometheus_remote_storage_samples_failed_total{remote_name="greenflow-sink",url="https://x/vm/api/v1/write"} 3
prometheus_remote_storage_samples_dropped_total{remote_name="greenflow-sink",url="https://x/vm/api/v1/write"} 0
"#;

    #[test]
    fn reads_the_older_global_highest_timestamp() {
        let m = parse_queue_metrics(V2, "sinkq").unwrap();
        assert_eq!(m.highest_timestamp, 1.795633755e9);
        assert_eq!(m.highest_sent_timestamp, 1.795633754e9);
        assert_eq!(m.samples_sent, 1288.0);
        assert_eq!(m.samples_in, Some(1288.0));
        assert_eq!(m.samples_pending, 0.0);
    }

    #[test]
    fn prefers_the_per_queue_highest_timestamp() {
        let m = parse_queue_metrics(V3, "greenflow-sink").unwrap();
        assert_eq!(m.highest_timestamp, 1.7e9, "ours, not the other queue's");
        assert_eq!(m.samples_pending, 512.0);
        assert_eq!(m.samples_failed, 3.0);
    }

    #[test]
    fn a_missing_queue_names_the_ones_seen() {
        let err = parse_queue_metrics(V3, "nope").unwrap_err().to_string();
        assert!(err.contains("`nope`") && err.contains("greenflow-sink, other"), "{err}");
    }

    #[test]
    fn label_values_with_escapes_and_commas() {
        let text =
            "prometheus_remote_storage_samples_pending{url=\"http://a/b?x=1,y=\\\"2\\\"\",remote_name=\"q\"} 7\n";
        assert_eq!(parse_queue_metrics(text, "q").unwrap().samples_pending, 7.0);
    }

    #[test]
    fn drain_decisions() {
        let start = QueueMetrics { samples_failed: 2.0, ..Default::default() };
        let done = QueueMetrics { highest_sent_timestamp: 100.0, samples_failed: 2.0, ..Default::default() };
        assert_eq!(drain_state(&start, &done, 100.0, None), DrainState::Drained, "old failures do not count");
        let behind = QueueMetrics {
            highest_sent_timestamp: 90.0,
            samples_pending: 10.0,
            samples_failed: 2.0,
            ..Default::default()
        };
        assert_eq!(
            drain_state(&start, &behind, 100.0, None),
            DrainState::Pending { samples_pending: 10.0, behind_seconds: 10.0 }
        );
        let pending_only = QueueMetrics {
            highest_sent_timestamp: 100.0,
            samples_pending: 1.0,
            samples_failed: 2.0,
            ..Default::default()
        };
        assert!(matches!(drain_state(&start, &pending_only, 100.0, None), DrainState::Pending { .. }));
        // The same queue, refilled by scrapes after the end: drained once everything that entered by then left.
        let refilled = QueueMetrics { samples_sent: 998.0, ..pending_only };
        assert_eq!(drain_state(&start, &refilled, 100.0, Some(1000.0)), DrainState::Drained);
        assert!(matches!(drain_state(&start, &refilled, 100.0, Some(1001.0)), DrainState::Pending { .. }));
        let lost = QueueMetrics {
            highest_sent_timestamp: 100.0,
            samples_failed: 7.0,
            samples_dropped: 1.0,
            ..Default::default()
        };
        assert_eq!(
            drain_state(&start, &lost, 100.0, None),
            DrainState::Lossy { failed: 5.0, dropped: 1.0, settled: true }
        );
        // A 401 fails every batch: nothing is ever sent, but the samples up to the end have entered and left.
        let refused = QueueMetrics { highest_timestamp: 101.0, samples_failed: 50.0, ..Default::default() };
        assert!(matches!(drain_state(&start, &refused, 100.0, None), DrainState::Lossy { settled: true, .. }));
        let still_queued = QueueMetrics { samples_pending: 3.0, ..refused };
        assert!(matches!(drain_state(&start, &still_queued, 100.0, None), DrainState::Lossy { settled: false, .. }));
    }
}
