//! A small typed client of the config service API, shared by the proxy's
//! watcher and `edgesteer ctl`. Requests and answers are the [`crate::api`]
//! types.

use std::time::Duration;

use edgesteer_config::TableSpec;
use serde::de::DeserializeOwned;

use crate::api::{
    etag, Ack, Diff, DiffQuery, ErrorBody, Fleet, History, HistoryQuery, PatchRegion, PutTable,
    Rollback, RolloutChange, RolloutCommand, Rollouts, StatsReport, TableRecord, WatchQuery,
};

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

/// A version as the API answers it: version, etag, table and audit
/// record. The name the watcher and `ctl` know it by.
pub type Versioned = TableRecord;

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
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        Err(ClientError::Api {
            status,
            code: body.error,
            message: body.message,
            errors: body
                .errors
                .into_iter()
                .map(|e| (e.path, e.reason))
                .collect(),
        })
    }

    /// Sends `req` and reads the answer as a `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        decode(resp).await
    }

    /// `GET /v1/table`: the current version.
    pub async fn get(&self) -> Result<Versioned, ClientError> {
        self.call(self.http.get(self.url("/v1/table"))).await
    }

    pub async fn version(&self, v: u64) -> Result<Versioned, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/versions/{v}"))))
            .await
    }

    /// Replaces the table; `if_match` is the version the change was based on.
    pub async fn put(
        &self,
        table: &TableSpec,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<Versioned, ClientError> {
        let body = PutTable {
            table,
            reason: reason.to_string(),
        };
        let mut req = self.http.put(self.url("/v1/table")).json(&body);
        if let Some(v) = if_match {
            req = req.header("if-match", etag(v));
        }
        self.call(req).await
    }

    /// Changes one region: weights by backend address, canary share, drain.
    pub async fn patch_region(
        &self,
        region: &str,
        change: &PatchRegion,
    ) -> Result<Versioned, ClientError> {
        let req = self
            .http
            .patch(self.url(&format!("/v1/regions/{region}")))
            .json(change);
        self.call(req).await
    }

    pub async fn rollback(&self, to: u64, reason: &str) -> Result<Versioned, ClientError> {
        let body = Rollback {
            to,
            reason: reason.to_string(),
        };
        self.call(self.http.post(self.url("/v1/rollback")).json(&body))
            .await
    }

    pub async fn history(&self, limit: usize) -> Result<History, ClientError> {
        let q = HistoryQuery { limit: Some(limit) };
        self.call(self.http.get(self.url("/v1/history")).query(&q))
            .await
    }

    pub async fn fleet(&self) -> Result<Fleet, ClientError> {
        self.call(self.http.get(self.url("/v1/fleet"))).await
    }

    pub async fn diff(&self, from: Option<u64>, to: Option<u64>) -> Result<Diff, ClientError> {
        let q = DiffQuery { from, to };
        self.call(self.http.get(self.url("/v1/diff")).query(&q))
            .await
    }

    /// Long-polls for a version newer than `after`; `None` on timeout.
    pub async fn watch(
        &self,
        after: u64,
        epoch: Option<&str>,
        proxy: &str,
        timeout: Duration,
    ) -> Result<Option<Versioned>, ClientError> {
        let q = WatchQuery {
            after,
            proxy: Some(proxy.to_string()),
            timeout_ms: Some(timeout.as_millis() as u64),
            epoch: epoch.map(str::to_string),
        };
        let req = self
            .http
            .get(self.url("/v1/watch"))
            .query(&q)
            .timeout(timeout + Duration::from_secs(5));
        let resp = self.send(req).await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        decode(resp).await.map(Some)
    }

    /// A proxy's per-track stats for the rollout controller.
    pub async fn report_stats(&self, report: &StatsReport) -> Result<(), ClientError> {
        self.send(self.http.post(self.url("/v1/stats")).json(report))
            .await
            .map(|_| ())
    }

    pub async fn rollouts(&self) -> Result<Rollouts, ClientError> {
        self.call(self.http.get(self.url("/v1/rollouts"))).await
    }

    /// start (with an optional plan), pause, resume or abort a region's
    /// rollout.
    pub async fn rollout(
        &self,
        region: &str,
        command: &RolloutCommand,
    ) -> Result<RolloutChange, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rollouts/{region}")))
                .json(command),
        )
        .await
    }

    pub async fn ack(&self, ack: &Ack) -> Result<(), ClientError> {
        self.send(self.http.post(self.url("/v1/fleet/ack")).json(ack))
            .await
            .map(|_| ())
    }
}

/// A successful answer's body as a `T`; a body of another shape is a
/// protocol error naming what did not fit.
async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let body = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("answer: {e}")))
}
