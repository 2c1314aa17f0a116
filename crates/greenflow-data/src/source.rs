//! One VictoriaMetrics (direct, or below the sink's `/vm` route), for the export and import APIs.

use std::time::Duration;

use greenflow_config::Secret;

use crate::error::ArchiveError;

/// A VictoriaMetrics base URL and the credential that reads and writes it (the sink's owner).
#[derive(Debug, Clone)]
pub struct VmEndpoint {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, Secret)>,
}

impl VmEndpoint {
    /// An endpoint below `base` (`http://127.0.0.1:8428`, or `https://laptop.tail1234.ts.net/vm`).
    pub fn new(base: &str, auth: Option<(String, Secret)>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { http, base: base.trim_end_matches('/').to_owned(), auth }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        }
    }

    fn failure(&self, what: &'static str, path: &str, reason: String) -> ArchiveError {
        ArchiveError::Sink { what, url: format!("{}{path}", self.base), reason }
    }

    /// Starts `/api/v1/export` of `selector` over `[from_ms, to_ms]` (both inclusive), one series a line.
    pub async fn export(&self, selector: &str, from_ms: i64, to_ms: i64) -> Result<reqwest::Response, ArchiveError> {
        let path = "/api/v1/export";
        let request = self.http.get(format!("{}{path}", self.base)).query(&[
            ("match[]", selector.to_owned()),
            ("start", seconds(from_ms)),
            ("end", seconds(to_ms)),
        ]);
        let response =
            self.with_auth(request).send().await.map_err(|e| self.failure("cannot export", path, cause(&e)))?;
        self.check(response, "cannot export", path).await
    }

    /// Writes JSON lines with `/api/v1/import`.
    pub async fn import(&self, body: Vec<u8>) -> Result<(), ArchiveError> {
        let path = "/api/v1/import";
        let request = self.http.post(format!("{}{path}", self.base)).body(body);
        let response =
            self.with_auth(request).send().await.map_err(|e| self.failure("cannot import", path, cause(&e)))?;
        self.check(response, "cannot import", path).await.map(drop)
    }

    /// Asks VictoriaMetrics to make what it took readable now (`/internal/force_flush`); best effort.
    pub async fn force_flush(&self) {
        let request = self.http.get(format!("{}/internal/force_flush", self.base));
        if let Err(e) = self.with_auth(request).send().await {
            tracing::debug!(error = %e, "force_flush failed");
        }
    }

    /// VictoriaMetrics' version (`vm_app_version` in `/metrics`, e.g. `victoria-metrics-20240115-...-v1.97.0`),
    /// when it tells.
    pub async fn version(&self) -> Option<String> {
        let request = self.http.get(format!("{}/metrics", self.base)).timeout(Duration::from_secs(10));
        let text = self.with_auth(request).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
        app_version(&text)
    }

    async fn check(
        &self,
        response: reqwest::Response,
        what: &'static str,
        path: &str,
    ) -> Result<reqwest::Response, ArchiveError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let reason = match status.as_u16() {
            401 | 403 => format!(
                "{status}: the credential is refused; export and import need the sink's owner \
                 (sink.username and GREENFLOW_SINK_PASSWORD)"
            ),
            404 => format!(
                "{status}: no VictoriaMetrics API here; give the URL VictoriaMetrics answers below (e.g. .../vm)"
            ),
            _ => format!("{status}: {}", body.trim().chars().take(300).collect::<String>()),
        };
        Err(self.failure(what, path, reason))
    }
}

/// The version in a `/metrics` text's `vm_app_version` line: `short_version`, else `version` (the former is empty
/// in distribution builds, Debian's).
fn app_version(metrics: &str) -> Option<String> {
    let line = metrics.lines().find(|l| l.starts_with("vm_app_version{"))?;
    let label = |name: &str| {
        let key = format!("{name}=\"");
        let (at, _) = line.match_indices(&key).find(|(i, _)| matches!(line[..*i].chars().last(), Some('{' | ',')))?;
        let start = at + key.len();
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned()).filter(|v| !v.is_empty())
    };
    label("short_version").or_else(|| label("version"))
}

/// A millisecond timestamp as the seconds VictoriaMetrics' `start` and `end` take.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The cause of a failed request, with its sources.
fn cause(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_comes_from_either_label() {
        let upstream = "vm_app_version{short_version=\"v1.145.0\",version=\"victoria-metrics-20250701-v1.145.0\"} 1\n";
        assert_eq!(super::app_version(upstream).as_deref(), Some("v1.145.0"));
        let debian = "# TYPE x gauge\nvm_app_version{short_version=\"\",version=\"victoria-metrics-1.79.5+ds1\"} 1\n";
        assert_eq!(super::app_version(debian).as_deref(), Some("victoria-metrics-1.79.5+ds1"));
        assert_eq!(super::app_version("up 1\n"), None);
    }
}
