//! The synthetic scrape targets of `greenflow bench ingest`, and the small HTTP client the benchmarks read
//! `/metrics` pages with.
//!
//! One HTTP/1.1 server on 127.0.0.1 answers every `GET` with Prometheus' text exposition format: `series` gauges
//! spread over a few metric names, whose values change on every scrape (so that nothing compresses to nothing and
//! VictoriaMetrics stores a new value each time). Every scrape job of the agent points at it; the `job` label keeps
//! their series apart. Plain threads, one per connection: the agent keeps one connection per target open, and a
//! scrape body is built in well under a millisecond per thousand series.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How many metric names the series are spread over.
const METRIC_NAMES: usize = 20;
/// A request head longer than this is not a scrape.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
struct Shared {
    series: AtomicUsize,
    scrapes: AtomicU64,
    stop: AtomicBool,
}

/// The running server; dropping it stops it.
#[derive(Debug)]
pub(super) struct SyntheticTargets {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl SyntheticTargets {
    /// Listens on a free loopback port; every scrape returns `series` series.
    pub(super) fn start(series: usize) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            series: AtomicUsize::new(series),
            scrapes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new().name("bench-targets".into()).spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accepting);
                let _ = std::thread::Builder::new().name("bench-target".into()).spawn(move || serve(stream, &shared));
            }
        })?;
        Ok(Self { addr, shared, acceptor: Some(acceptor) })
    }

    /// `127.0.0.1:PORT`.
    pub(super) fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Changes the number of series from the next scrape on.
    pub(super) fn set_series(&self, series: usize) {
        self.shared.series.store(series, Ordering::SeqCst);
    }

    /// Scrapes answered so far.
    pub(super) fn scrapes(&self) -> u64 {
        self.shared.scrapes.load(Ordering::SeqCst)
    }
}

impl Drop for SyntheticTargets {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor so that it sees the flag; connection threads see it within their read timeout.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Answers the requests of one connection until the peer closes it or the server stops.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_nodelay(true);
    let mut pending = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut body = String::new();
    loop {
        let head_end = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if shared.stop.load(Ordering::SeqCst) || pending.len() > MAX_HEAD {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        pending.drain(..head_end);
        let close =
            head.contains("\r\nconnection: close") || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        let scrape = shared.scrapes.fetch_add(1, Ordering::Relaxed);
        exposition(&mut body, shared.series.load(Ordering::Relaxed), scrape);
        let header = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream.write_all(header.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).is_err() || close {
            return;
        }
    }
}

/// The text of scrape number `scrape`: `series` gauges `greenflow_bench_value_NN{series="I"}`, every value different
/// from the one before.
pub(super) fn exposition(out: &mut String, series: usize, scrape: u64) {
    out.clear();
    let names = METRIC_NAMES.min(series).max(1);
    for name in 0..names {
        let _ = writeln!(out, "# TYPE greenflow_bench_value_{name:02} gauge");
        for i in (name..series).step_by(names) {
            // Changes by 35761 (mod 100000) from one scrape to the next: never the same value twice in a row.
            let value = scrape.wrapping_mul(2_654_435_761).wrapping_add(i as u64 * 40_503) % 100_000;
            let _ = writeln!(out, "greenflow_bench_value_{name:02}{{series=\"{i}\"}} {value}");
        }
    }
}

/// `GET http://ADDR{path}` as HTTP/1.0 (the server closes the connection after the body: no chunking, no
/// keep-alive). Returns the status and the body. Blocking: call it from [`get`].
fn get_blocking(addr: &str, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let socket: SocketAddr = addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of the response head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status in the response"))?;
    Ok((status, body.to_owned()))
}

/// `GET http://ADDR{path}` on a blocking thread; an answer other than 2xx is an error.
pub(super) async fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let (a, p) = (addr.to_owned(), path.to_owned());
    let (status, body) = tokio::task::spawn_blocking(move || get_blocking(&a, &p, Duration::from_secs(10)))
        .await
        .map_err(|e| anyhow::anyhow!("GET http://{addr}{path}: {e}"))?
        .map_err(|e| anyhow::anyhow!("GET http://{addr}{path}: {e}"))?;
    if !(200..300).contains(&status) {
        anyhow::bail!("GET http://{addr}{path} answered {status}");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_once_with_values_that_change() {
        let (mut a, mut b) = (String::new(), String::new());
        exposition(&mut a, 2000, 7);
        exposition(&mut b, 2000, 8);
        let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect::<Vec<_>>();
        let (sa, sb) = (samples(&a), samples(&b));
        assert_eq!(sa.len(), 2000);
        let names: std::collections::BTreeSet<_> = sa.iter().map(|l| l.split(' ').next().unwrap().to_owned()).collect();
        assert_eq!(names.len(), 2000, "no series twice");
        assert!(sa.iter().zip(&sb).all(|(x, y)| x.split(' ').next() == y.split(' ').next() && x != y));
        let mut few = String::new();
        exposition(&mut few, 3, 0);
        assert_eq!(samples(&few).len(), 3);
    }

    #[test]
    fn serves_scrapes_over_one_connection() {
        let targets = SyntheticTargets::start(50).unwrap();
        let mut stream = TcpStream::connect(targets.address()).unwrap();
        for _ in 0..2 {
            write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap();
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).unwrap();
            assert_eq!(String::from_utf8(body).unwrap().lines().filter(|l| !l.starts_with('#')).count(), 50);
        }
        let (status, body) = get_blocking(&targets.address(), "/metrics", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("greenflow_bench_value_00{series=\"0\"}"));
        assert_eq!(targets.scrapes(), 3);
    }
}
