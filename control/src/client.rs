//! A small typed client of the config service API, shared by the proxy's
//! watcher and `edgesteer ctl`.

use std::time::Duration;

use edgesteer_config::TableSpec;
use serde_json::{json, Value};

use crate::service::Ack;

/// Errors a caller can act on: the service's own error document, or why
/// the service could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the config service at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{status}: {message}{}", fields(.errors))]
    Api {
        status: u16,
        code: String,
        message: String,
        errors: Vec<(String, String)>,
    },
    #[error("unexpected answer from the config service: {0}")]
    Protocol(String),
}

fn fields(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(p, r)| format!("\n  {p}: {r}"))
        .collect()
}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A version as the API returns it.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub version: u64,
    pub table: TableSpec,
    pub raw: Value,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .unwrap_or_default();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        if resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(ClientError::Api {
            status,
            code: body["error"].as_str().unwrap_or("error").to_string(),
            message: body["message"].as_str().unwrap_or("").to_string(),
            errors: body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or("").to_string(),
                        e["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        })
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp = self.send(req).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn versioned(raw: Value) -> Result<Versioned, ClientError> {
        let version = raw["version"]
            .as_u64()
            .ok_or_else(|| ClientError::Protocol("no version in answer".into()))?;
        let table: TableSpec = serde_json::from_value(raw["table"].clone())
            .map_err(|e| ClientError::Protocol(format!("table: {e}")))?;
        Ok(Versioned {
            version,
            table,
            raw,
        })
    }

    pub async fn get(&self) -> Result<Versioned, ClientError> {
        Self::versioned(self.json(self.http.get(self.url("/v1/table"))).await?)
    }

    pub async fn version(&self, v: u64) -> Result<Versioned, ClientError> {
        Self::versioned(
            self.json(self.http.get(self.url(&format!("/v1/versions/{v}"))))
                .await?,
        )
    }

    /// Replaces the table; `if_match` is the version the change was based on.
    pub async fn put(
        &self,
        table: &TableSpec,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<Versioned, ClientError> {
        let mut req = self
            .http
            .put(self.url("/v1/table"))
            .json(&json!({ "table": table, "reason": reason }));
        if let Some(v) = if_match {
            req = req.header("if-match", format!("\"v{v}\""));
        }
        Self::versioned(self.json(req).await?)
    }

    /// Changes one region: weights by backend address, canary share, drain.
    pub async fn patch_region(
        &self,
        region: &str,
        change: Value,
    ) -> Result<Versioned, ClientError> {
        Self::versioned(
            self.json(
                self.http
                    .patch(self.url(&format!("/v1/regions/{region}")))
                    .json(&change),
            )
            .await?,
        )
    }

    pub async fn rollback(&self, to: u64, reason: &str) -> Result<Versioned, ClientError> {
        Self::versioned(
            self.json(
                self.http
                    .post(self.url("/v1/rollback"))
                    .json(&json!({ "to": to, "reason": reason })),
            )
            .await?,
        )
    }

    pub async fn history(&self, limit: usize) -> Result<Value, ClientError> {
        self.json(
            self.http
                .get(self.url(&format!("/v1/history?limit={limit}"))),
        )
        .await
    }

    pub async fn fleet(&self) -> Result<Value, ClientError> {
        self.json(self.http.get(self.url("/v1/fleet"))).await
    }

    pub async fn diff(&self, from: Option<u64>, to: Option<u64>) -> Result<Value, ClientError> {
        let mut q = Vec::new();
        if let Some(f) = from {
            q.push(format!("from={f}"));
        }
        if let Some(t) = to {
            q.push(format!("to={t}"));
        }
        self.json(
            self.http
                .get(self.url(&format!("/v1/diff?{}", q.join("&")))),
        )
        .await
    }

    /// Long-polls for a version newer than `after`; `None` on timeout.
    pub async fn watch(
        &self,
        after: u64,
        proxy: &str,
        timeout: Duration,
    ) -> Result<Option<Versioned>, ClientError> {
        let req = self
            .http
            .get(self.url("/v1/watch"))
            .query(&[
                ("after", after.to_string()),
                ("proxy", proxy.to_string()),
                ("timeout_ms", timeout.as_millis().to_string()),
            ])
            .timeout(timeout + Duration::from_secs(5));
        let resp = self.send(req).await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let raw: Value = resp
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Self::versioned(raw).map(Some)
    }

    /// A proxy's per-track stats for the rollout controller.
    pub async fn report_stats(
        &self,
        report: &crate::rollout::StatsReport,
    ) -> Result<(), ClientError> {
        self.send(self.http.post(self.url("/v1/stats")).json(report))
            .await
            .map(|_| ())
    }

    pub async fn rollouts(&self) -> Result<Value, ClientError> {
        self.json(self.http.get(self.url("/v1/rollouts"))).await
    }

    /// start (with an optional plan), pause, resume or abort a region's rollout.
    pub async fn rollout(&self, region: &str, body: Value) -> Result<Value, ClientError> {
        self.json(
            self.http
                .post(self.url(&format!("/v1/rollouts/{region}")))
                .json(&body),
        )
        .await
    }

    pub async fn ack(&self, ack: &Ack) -> Result<(), ClientError> {
        self.send(self.http.post(self.url("/v1/fleet/ack")).json(ack))
            .await
            .map(|_| ())
    }
}
