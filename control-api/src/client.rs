//! A small typed client of the config service API, shared by the proxy's
//! watcher and `edgesteer ctl`. Requests and answers are the [`crate::api`]
//! types.

use std::time::Duration;

use edgesteer_config::TableSpec;
use serde::de::DeserializeOwned;

use crate::client_tls::builder;
pub use crate::client_tls::ClientTls;

use crate::api::{
    etag, Ack, Diff, DiffQuery, ErrorBody, Fleet, History, HistoryQuery, PatchRegion, PutTable,
    Rollback, RolloutChange, RolloutCommand, Rollouts, StatsReport, TableRecord, WatchQuery,
};

/// Errors a caller can act on: the service's own error document, or why
/// the service could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `cause` is shown whole in the message (its chain, deduplicated),
    /// and is not an error `source`, so a caller printing sources (anyhow's
    /// `{:#}`) does not print it twice.
    #[error("cannot reach the config service at {url}: {}{}", chain(.cause), tls_hint(.url, .cause))]
    Unreachable { url: String, cause: reqwest::Error },
    #[error("{status}{}: {message}{}", error_code(.code), fields(.errors))]
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
    #[error("no answer from the config service at {url}: {}; the change may or may not have been committed: look at `edgesteer ctl history` before trying again", chain(.cause))]
    Unknown { url: String, cause: reqwest::Error },
}

/// Largest watch answer a proxy reads (a 10,000-backend table is about
/// 1 MB); a bigger one is refused as [`ClientError::TooLarge`].
pub const MAX_WATCH_BODY: usize = 16 * 1024 * 1024;

/// How long a call may take in all (connect, request, whole answer) unless
/// [`Client::with_call_timeout`] says otherwise. A replica that accepts
/// and stays silent this long is left for the next one.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a watch's deadline adds to the time the service holds it.
pub const WATCH_MARGIN: Duration = Duration::from_secs(5);

/// The most of an error answer read (the service's are a few hundred bytes).
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// An error and its causes, so a TLS refusal says why (e.g. "invalid
/// peer certificate: UnknownIssuer": check --control-ca).
/// A plain `http://` URL answered with bytes that are not HTTP: most
/// likely a TLS service (its alert is read as a bad status line).
fn tls_hint(url: &str, cause: &reqwest::Error) -> &'static str {
    if url.starts_with("http://") && chain(cause).contains("invalid HTTP version") {
        " (the service answered in something other than HTTP: if it serves TLS, use an https:// URL, with --control-ca for a private CA)"
    } else {
        ""
    }
}

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

/// The error document's code after the status (`400 empty_change`).
fn error_code(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
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
/// cannot be reached or gives no answer within the call's deadline, the
/// call goes on to the next one (a write only if it was never sent), and
/// so do the calls after it.
#[derive(Clone, Debug)]
pub struct Client {
    bases: std::sync::Arc<Vec<String>>,
    at: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: Option<String>,
    http: reqwest::Client,
    max_watch_body: usize,
    call_timeout: Duration,
}

/// A version as the API answers it: version, etag, table and audit
/// record. The name the watcher and `ctl` know it by.
pub type Versioned = TableRecord;

impl Client {
    /// A client of the service at `base`; an `https` URL is verified
    /// against the built-in roots (see [`Client::with_tls`] for a CA).
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client::over(base, token, builder().build().unwrap_or_default())
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
        let http = crate::client_tls::http_client(base, tls).map_err(ClientError::Tls)?;
        Ok(Client::over(base, token, http))
    }

    fn over(base: &str, token: Option<String>, http: reqwest::Client) -> Client {
        Client {
            bases: std::sync::Arc::new(split_bases(base)),
            at: std::sync::Arc::default(),
            token,
            http,
            max_watch_body: MAX_WATCH_BODY,
            call_timeout: CALL_TIMEOUT,
        }
    }

    /// Changes the largest watch answer read (default [`MAX_WATCH_BODY`]).
    pub fn with_max_watch_body(mut self, limit: usize) -> Client {
        self.max_watch_body = limit;
        self
    }

    /// Changes how long a call other than a watch may take in all
    /// (default [`CALL_TIMEOUT`]).
    pub fn with_call_timeout(mut self, deadline: Duration) -> Client {
        self.call_timeout = deadline;
        self
    }

    /// The replica calls go to now.
    pub fn base(&self) -> &str {
        let i = self.at.load(std::sync::atomic::Ordering::Relaxed);
        self.bases
            .get(i % self.bases.len().max(1))
            .map_or("", String::as_str)
    }

    /// The next replica takes the following calls.
    fn fail_over(&self, from: &str) {
        if self.bases.len() > 1 && self.base() == from {
            self.at.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                from,
                to = self.base(),
                "config service replica unreachable or silent; moving to the next"
            );
        }
    }

    /// Sends the request `make` builds for a replica's base URL, under
    /// `deadline` (connect, request and the whole answer), and reads the
    /// answer. A replica that cannot be reached, or is silent past the
    /// deadline, is left for the next one, which gets the same request at
    /// once; a write (`Retry::Unsent`) moves on only when the request
    /// certainly never reached the replica. A non-2xx answer other than
    /// 304 is the service's error document, read up to [`MAX_ERROR_BODY`].
    async fn exchange(
        &self,
        retry: Retry,
        deadline: Duration,
        limit: usize,
        make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ClientError> {
        let mut last = None;
        for _ in 0..self.bases.len().max(1) {
            let url = self.base().to_string();
            let mut req = make(&self.http, &url).timeout(deadline);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            match attempt(req, &url, limit).await {
                Ok((status, body)) => return answer(status, body),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transport { source, sent }) => {
                    tracing::debug!(url, error = %chain(&source), sent, "config service call failed");
                    self.fail_over(&url);
                    if sent && retry == Retry::Unsent {
                        return Err(ClientError::Unknown { url, cause: source });
                    }
                    last = Some(ClientError::Unreachable { url, cause: source });
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no config service URL".into())))
    }

    /// [`Client::exchange`] with the usual deadline, the answer read as a `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        retry: Retry,
        make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let (_, body) = self
            .exchange(retry, self.call_timeout, usize::MAX, make)
            .await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("answer: {e}")))
    }

    /// [`Client::exchange`] with the usual deadline, the answer ignored.
    async fn post_only(&self, path: &str, body: &impl serde::Serialize) -> Result<(), ClientError> {
        self.exchange(Retry::Always, self.call_timeout, MAX_ERROR_BODY, |h, b| {
            h.post(format!("{b}{path}")).json(body)
        })
        .await
        .map(|_| ())
    }

    /// `GET /v1/table`: the current version.
    pub async fn get(&self) -> Result<Versioned, ClientError> {
        self.call(Retry::Always, |h, b| h.get(format!("{b}/v1/table")))
            .await
    }

    pub async fn version(&self, v: u64) -> Result<Versioned, ClientError> {
        self.call(Retry::Always, |h, b| h.get(format!("{b}/v1/versions/{v}")))
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
        self.call(Retry::Unsent, |h, b| {
            let req = h.put(format!("{b}/v1/table")).json(&body);
            match if_match {
                Some(v) => req.header("if-match", etag(v)),
                None => req,
            }
        })
        .await
    }

    /// Changes one region: weights by backend address, canary share, drain.
    pub async fn patch_region(
        &self,
        region: &str,
        change: &PatchRegion,
    ) -> Result<Versioned, ClientError> {
        self.call(Retry::Unsent, |h, b| {
            h.patch(format!("{b}/v1/regions/{region}")).json(change)
        })
        .await
    }

    pub async fn rollback(&self, to: u64, reason: &str) -> Result<Versioned, ClientError> {
        let body = Rollback {
            to,
            reason: reason.to_string(),
        };
        self.call(Retry::Unsent, |h, b| {
            h.post(format!("{b}/v1/rollback")).json(&body)
        })
        .await
    }

    pub async fn history(&self, limit: usize) -> Result<History, ClientError> {
        let q = HistoryQuery { limit: Some(limit) };
        self.call(Retry::Always, |h, b| {
            h.get(format!("{b}/v1/history")).query(&q)
        })
        .await
    }

    pub async fn fleet(&self) -> Result<Fleet, ClientError> {
        self.call(Retry::Always, |h, b| h.get(format!("{b}/v1/fleet")))
            .await
    }

    pub async fn diff(&self, from: Option<u64>, to: Option<u64>) -> Result<Diff, ClientError> {
        let q = DiffQuery { from, to };
        self.call(Retry::Always, |h, b| {
            h.get(format!("{b}/v1/diff")).query(&q)
        })
        .await
    }

    /// Long-polls for a version newer than `after`; `None` on timeout. The
    /// call's deadline is `timeout` plus [`WATCH_MARGIN`].
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
        let deadline = timeout + WATCH_MARGIN;
        let (status, body) = self
            .exchange(Retry::Always, deadline, self.max_watch_body, |h, b| {
                h.get(format!("{b}/v1/watch")).query(&q)
            })
            .await?;
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("answer: {e}")))
    }

    /// A proxy's per-track stats for the rollout controller.
    pub async fn report_stats(&self, report: &StatsReport) -> Result<(), ClientError> {
        self.post_only("/v1/stats", report).await
    }

    pub async fn rollouts(&self) -> Result<Rollouts, ClientError> {
        self.call(Retry::Always, |h, b| h.get(format!("{b}/v1/rollouts")))
            .await
    }

    /// start (with an optional plan), pause, resume or abort a region's
    /// rollout.
    pub async fn rollout(
        &self,
        region: &str,
        command: &RolloutCommand,
    ) -> Result<RolloutChange, ClientError> {
        self.call(Retry::Unsent, |h, b| {
            h.post(format!("{b}/v1/rollouts/{region}")).json(command)
        })
        .await
    }

    pub async fn ack(&self, ack: &Ack) -> Result<(), ClientError> {
        self.post_only("/v1/fleet/ack", ack).await
    }
}

/// When a call moves on to the next replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// On any failure to get an answer: reads, and what is safe to repeat
    /// (acks, stats).
    Always,
    /// Only when the request never left (no connection): writes.
    Unsent,
}

/// Why one attempt at one replica gave no answer.
enum Failure {
    /// No use asking another replica (e.g. an answer too large).
    Final(ClientError),
    /// The transport failed; `sent` when the request may have arrived.
    Transport { source: reqwest::Error, sent: bool },
}

/// One request to one replica: the status and the body, read whole (at
/// most `limit` bytes of a 2xx answer, [`MAX_ERROR_BODY`] of an error).
async fn attempt(
    req: reqwest::RequestBuilder,
    url: &str,
    limit: usize,
) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
    let resp = req.send().await.map_err(|source| Failure::Transport {
        sent: !source.is_connect(),
        source,
    })?;
    let status = resp.status();
    let body = if status.is_success() {
        read_bounded(resp, limit, url, false).await?
    } else if status == reqwest::StatusCode::NOT_MODIFIED {
        Vec::new()
    } else {
        // An error document is small; a longer one is cut, not refused.
        read_bounded(resp, MAX_ERROR_BODY, url, true)
            .await
            .unwrap_or_default()
    };
    Ok((status, body))
}

/// A 2xx or 304 answer as it is; any other as the service's error.
fn answer(
    status: reqwest::StatusCode,
    body: Vec<u8>,
) -> Result<(reqwest::StatusCode, Vec<u8>), ClientError> {
    if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok((status, body));
    }
    let doc: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    let message = if doc.message.is_empty() && doc.error.is_empty() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!(
            "{} {}",
            status.canonical_reason().unwrap_or(""),
            text.trim()
        )
    } else {
        doc.message
    };
    Err(ClientError::Api {
        status: status.as_u16(),
        code: doc.error,
        message,
        errors: doc.errors.into_iter().map(|e| (e.path, e.reason)).collect(),
    })
}

/// A body of at most `limit` bytes: refused (as [`ClientError::TooLarge`])
/// by its announced length or as soon as more arrives; with `cut`, the
/// first `limit` bytes are kept and the rest is not read.
async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
    cut: bool,
) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        Failure::Final(ClientError::TooLarge {
            url: url.to_string(),
            limit,
        })
    };
    if !cut && resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|source| Failure::Transport { source, sent: true })?
    {
        if body.len() + chunk.len() > limit {
            if cut {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
