//! An HTTP client for the sink's VictoriaMetrics, through Caddy (with basic auth) or directly.

use std::collections::BTreeMap;
use std::time::Duration;

use greenflow_config::Secret;
use serde::Deserialize;

use crate::error::SinkError;

/// One sample of an instant-query result.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series' labels.
    pub metric: BTreeMap<String, String>,
    /// Sample time, seconds since the epoch.
    pub timestamp: f64,
    /// Sample value.
    pub value: f64,
}

/// One series of a range-query result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub metric: BTreeMap<String, String>,
    /// (seconds since the epoch, value), in time order.
    pub points: Vec<(f64, f64)>,
}

/// One series for [`SinkClient::import`]: labels (with `__name__`) and samples (timestamps in milliseconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImportSeries {
    /// The labels, `__name__` included.
    pub metric: BTreeMap<String, String>,
    /// Sample values.
    pub values: Vec<f64>,
    /// Sample timestamps, milliseconds since the epoch.
    pub timestamps: Vec<i64>,
}

/// A client of the Prometheus query API and VictoriaMetrics' own endpoints below one base URL.
#[derive(Debug, Clone)]
pub struct SinkClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, Secret)>,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl SinkClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080/vm`), with basic auth when credentials are given.
    pub fn new(base: impl Into<String>, auth: Option<(String, Secret)>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { http, base: base.into().trim_end_matches('/').to_owned(), auth }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(url);
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        }
    }

    /// `GET <base>/health`: VictoriaMetrics answers `OK` when it is ready.
    pub async fn health(&self) -> Result<(), SinkError> {
        let url = format!("{}/health", self.base);
        let response = self
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|source| SinkError::Http { what: "health check".into(), url: url.clone(), source })?;
        let status = response.status();
        if !status.is_success() {
            return Err(SinkError::Status { what: "health check".into(), url, status: status.as_u16() });
        }
        Ok(())
    }

    /// The storage paths VictoriaMetrics has turned read-only (`vm_storage_is_read_only 1` on its `/metrics`: the free
    /// disk space fell below `-storage.minFreeDiskSpaceBytes`; it then refuses every write with 503).
    pub async fn read_only_paths(&self) -> Result<Vec<String>, SinkError> {
        let url = format!("{}/metrics", self.base);
        let text = self
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|source| SinkError::Http { what: "metrics".into(), url: url.clone(), source })?
            .text()
            .await
            .map_err(|source| SinkError::Http { what: "metrics".into(), url, source })?;
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix("vm_storage_is_read_only"))
            .filter(|rest| rest.trim_end().ends_with(" 1"))
            .map(|rest| rest.split('"').nth(1).unwrap_or("the data directory").to_owned())
            .collect())
    }

    /// Proves that this client's credentials may remote-write (`<base>/api/v1/write`) without writing anything: an
    /// empty request passes authentication and is then refused or ignored by VictoriaMetrics (400 or 204), while a
    /// wrong credential gets 401 from Caddy.
    pub async fn check_remote_write(&self) -> Result<(), SinkError> {
        let url = format!("{}/api/v1/write", self.base);
        let request = self
            .http
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(Vec::new());
        let request = match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        };
        let response = request.send().await.map_err(|source| SinkError::Http {
            what: "remote-write check".into(),
            url: url.clone(),
            source,
        })?;
        match response.status().as_u16() {
            status @ (401 | 403 | 404 | 405 | 500..) => {
                Err(SinkError::Status { what: "remote-write check".into(), url, status })
            }
            _ => Ok(()),
        }
    }

    /// Asks VictoriaMetrics to make everything it has received searchable now (`/internal/force_flush`) instead of
    /// at its next periodic flush, which can be ten seconds away for new series.
    pub async fn force_flush(&self) -> Result<(), SinkError> {
        let url = format!("{}/internal/force_flush", self.base);
        let response = self.get(&url).send().await.map_err(|source| SinkError::Http {
            what: "flush".into(),
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(SinkError::Status { what: "flush".into(), url, status: status.as_u16() });
        }
        Ok(())
    }

    /// Writes samples with VictoriaMetrics' JSON-lines import API (`/api/v1/import`), one [`ImportSeries`] a line.
    pub async fn import(&self, series: &[ImportSeries]) -> Result<(), SinkError> {
        let url = format!("{}/api/v1/import", self.base);
        let mut body = String::new();
        for item in series {
            let line = serde_json::to_string(item).map_err(|e| SinkError::Answer {
                what: "import".into(),
                url: url.clone(),
                detail: e.to_string(),
            })?;
            body.push_str(&line);
            body.push('\n');
        }
        let request = self.http.post(&url).body(body);
        let request = match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        };
        let response = request.send().await.map_err(|source| SinkError::Http {
            what: "import".into(),
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(SinkError::Status { what: "import".into(), url, status: status.as_u16() });
        }
        Ok(())
    }

    /// Runs an instant query and returns its vector result.
    pub async fn query(&self, promql: &str) -> Result<Vec<InstantSample>, SinkError> {
        self.query_at(promql, None).await
    }

    /// Runs an instant query evaluated at `time` (seconds since the epoch; `None`: now).
    pub async fn query_at(&self, promql: &str, time: Option<f64>) -> Result<Vec<InstantSample>, SinkError> {
        let mut params = vec![("query", promql.to_owned())];
        if let Some(time) = time {
            params.push(("time", format!("{time:.3}")));
        }
        let (what, url, data) = self.api("/api/v1/query", promql, &params).await?;
        match data.result_type.as_str() {
            "vector" => {
                let items: Vec<VectorItem> = serde_json::from_value(data.result).map_err(|e| SinkError::Answer {
                    what: what.clone(),
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
                Ok(items
                    .into_iter()
                    .map(|item| InstantSample {
                        metric: item.metric,
                        timestamp: item.value.0,
                        value: item.value.1.parse().unwrap_or(f64::NAN),
                    })
                    .collect())
            }
            "scalar" => {
                let (timestamp, value): (f64, String) = serde_json::from_value(data.result)
                    .map_err(|e| SinkError::Answer { what, url, detail: e.to_string() })?;
                Ok(vec![InstantSample { metric: BTreeMap::new(), timestamp, value: value.parse().unwrap_or(f64::NAN) }])
            }
            other => Err(SinkError::Answer { what, url, detail: format!("result type {other}, expected vector") }),
        }
    }

    /// Runs a range query over `[start, end]` (seconds since the epoch) every `step` seconds; each series comes
    /// with its points in time order.
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<RangeSeries>, SinkError> {
        let params = [
            ("query", promql.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step:.3}")),
        ];
        let (what, url, data) = self.api("/api/v1/query_range", promql, &params).await?;
        if data.result_type != "matrix" {
            let detail = format!("result type {}, expected matrix", data.result_type);
            return Err(SinkError::Answer { what, url, detail });
        }
        let items: Vec<MatrixItem> =
            serde_json::from_value(data.result).map_err(|e| SinkError::Answer { what, url, detail: e.to_string() })?;
        Ok(items
            .into_iter()
            .map(|item| RangeSeries {
                metric: item.metric,
                points: item.values.into_iter().map(|(t, v)| (t, v.parse().unwrap_or(f64::NAN))).collect(),
            })
            .collect())
    }

    /// Calls a query endpoint and returns what was asked (for errors), the URL and the answer's data.
    async fn api(
        &self,
        path: &str,
        promql: &str,
        params: &[(&str, String)],
    ) -> Result<(String, String, ApiData), SinkError> {
        let url = format!("{}{path}", self.base);
        let what = format!("query `{promql}`");
        let response = self.get(&url).query(params).send().await.map_err(|source| SinkError::Http {
            what: what.clone(),
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if !status.is_success() && status.as_u16() != 400 && status.as_u16() != 422 {
            return Err(SinkError::Status { what, url, status: status.as_u16() });
        }
        let body: ApiResponse =
            response.json().await.map_err(|source| SinkError::Http { what: what.clone(), url: url.clone(), source })?;
        if body.status != "success" {
            return Err(SinkError::Answer { what, url, detail: body.error.unwrap_or(body.status) });
        }
        let data = body.data.ok_or_else(|| SinkError::Answer {
            what: what.clone(),
            url: url.clone(),
            detail: "no data".into(),
        })?;
        Ok((what, url, data))
    }

    /// The value of a query that yields at most one number (`count(...)`, `max(...)`); `None` for an empty result.
    pub async fn query_value(&self, promql: &str) -> Result<Option<f64>, SinkError> {
        Ok(self.query(promql).await?.first().map(|s| s.value))
    }
}

/// Quotes a label value for PromQL.
pub fn promql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
