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
    #[error("cannot reach the config service at {url}: {}", chain(.source))]
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
    #[error("the config service at {url} sent a watch answer of more than {limit} bytes; refused (the current table keeps serving): the table is too big for this proxy, or the service is not the config service")]
    TooLarge { url: String, limit: usize },
    #[error("{0}")]
    Tls(String),
}

/// Largest watch answer a proxy reads (a 10,000-backend table is about
/// 1 MB); a bigger one is refused as [`ClientError::TooLarge`].
pub const MAX_WATCH_BODY: usize = 16 * 1024 * 1024;

/// How the client verifies the service, and what it shows of itself.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM file of the CA(s) to trust instead of the built-in roots
    /// (`--control-ca`, `EDGESTEER_CONTROL_CA`).
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for mTLS (`--control-cert`, `--control-key`).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// An error and its causes, so a TLS refusal says why (e.g. "invalid
/// peer certificate: UnknownIssuer": check --control-ca).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// `a,b,c` as URLs without a trailing `/`.
fn split_bases(base: &str) -> Vec<String> {
    let list: Vec<String> = base
        .split(',')
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if list.is_empty() {
        vec![base.to_string()]
    } else {
        list
    }
}

fn fields(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(p, r)| format!("\n  {p}: {r}"))
        .collect()
}

/// A client of one config service, or of several replicas of it: `base`
/// may be a comma-separated list of URLs. Calls go to one replica; when it
/// cannot be reached, the next call goes to the next one.
#[derive(Clone, Debug)]
pub struct Client {
    bases: std::sync::Arc<Vec<String>>,
    at: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: Option<String>,
    http: reqwest::Client,
    max_watch_body: usize,
}

/// A version as the API answers it: version, etag, table and audit
/// record. The name the watcher and `ctl` know it by.
pub type Versioned = TableRecord;

fn builder() -> reqwest::ClientBuilder {
    // Under the service's idle bound (75 s), so a pooled connection is
    // not reused just as the service closes it.
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(60))
}

impl Client {
    /// A client of the service at `base`; an `https` URL is verified
    /// against the built-in roots (see [`Client::with_tls`] for a CA).
    pub fn new(base: &str, token: Option<String>) -> Client {
        let http = builder().build().unwrap_or_default();
        Client {
            bases: std::sync::Arc::new(split_bases(base)),
            at: std::sync::Arc::default(),
            token,
            http,
            max_watch_body: MAX_WATCH_BODY,
        }
    }

    /// A client that trusts only `tls.ca` (when given) and presents
    /// `tls.identity` (when given). A CA or a certificate needs an
    /// `https://` URL.
    pub fn with_tls(
        base: &str,
        token: Option<String>,
        tls: &ClientTls,
    ) -> Result<Client, ClientError> {
        if tls.ca.is_none() && tls.identity.is_none() {
            return Ok(Client::new(base, token));
        }
        if split_bases(base).iter().any(|b| !b.starts_with("https://")) {
            return Err(ClientError::Tls(format!(
                "--control-ca/--control-cert need an https:// service URL, not {base}"
            )));
        }
        let mut b = builder().https_only(true);
        if let Some(ca) = &tls.ca {
            let certs = edgesteer_config::pem::certs(ca)
                .map_err(|e| ClientError::Tls(format!("--control-ca {e}")))?;
            b = b.tls_built_in_root_certs(false);
            for der in certs {
                let cert = reqwest::Certificate::from_der(&der)
                    .map_err(|e| ClientError::Tls(format!("--control-ca {}: {e}", ca.display())))?;
                b = b.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &tls.identity {
            let read = |flag: &str, p: &std::path::Path| {
                edgesteer_config::pem::read_bounded(p)
                    .map_err(|e| ClientError::Tls(format!("{flag} {e}")))
            };
            let mut pem = read("--control-key", key)?;
            pem.push(b'\n');
            pem.extend(read("--control-cert", cert)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ClientError::Tls(format!(
                    "--control-cert {} / --control-key {}: not a PEM certificate and private key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| {
            ClientError::Tls(format!("the TLS settings for {base} are not usable: {e}"))
        })?;
        Ok(Client {
            bases: std::sync::Arc::new(split_bases(base)),
            at: std::sync::Arc::default(),
            token,
            http,
            max_watch_body: MAX_WATCH_BODY,
        })
    }

    /// Changes the largest watch answer read (default [`MAX_WATCH_BODY`]).
    pub fn with_max_watch_body(mut self, limit: usize) -> Client {
        self.max_watch_body = limit;
        self
    }

    /// The replica calls go to now.
    pub fn base(&self) -> &str {
        let i = self.at.load(std::sync::atomic::Ordering::Relaxed);
        self.bases
            .get(i % self.bases.len().max(1))
            .map_or("", String::as_str)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The next replica takes the following calls.
    fn fail_over(&self, from: &str) {
        if self.bases.len() > 1 && self.base() == from {
            self.at.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                from,
                to = self.base(),
                "config service replica unreachable; moving to the next"
            );
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|source| {
            let url = self.base().to_string();
            self.fail_over(&url);
            ClientError::Unreachable { url, source }
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
        let body = read_bounded(resp, self.max_watch_body, self.base()).await?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("answer: {e}")))
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

/// A body of at most `limit` bytes: refused by its announced length, or
/// as soon as more arrives.
async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
