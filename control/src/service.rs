//! The config service: versions in memory, written through a [`Store`],
//! served over a JSON API, and pushed to proxies by long-poll.
//!
//! Every write is compiled before it is stored; a table that does not
//! compile never gets a version. Writes are serialised by one async mutex,
//! so versions are dense and `If-Match` is exact.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use bytes::Bytes;
use edgesteer_config::{compile, diff, parse, ConfigError, FieldError, TableSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{watch, Mutex};

use crate::store::{Audit, Store, VersionRecord};

/// Default cap on request bodies (a 10,000-backend table is about 1 MB).
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Longest a watch request is held open.
const MAX_WATCH: Duration = Duration::from_secs(60);

/// A named write token.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The name of the token whose secret was presented. Compares against every
/// token in constant time, without stopping early.
pub fn token_name(tokens: &[Token], presented: &str) -> Option<String> {
    let mut found: Option<&Token> = None;
    for t in tokens {
        if bool::from(t.secret.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(t);
        }
    }
    found.map(|t| t.name.clone())
}

impl std::str::FromStr for Token {
    type Err = String;
    /// `NAME=SECRET`
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((n, sec)) if !n.is_empty() && sec.len() >= 8 => Ok(Token {
                name: n.into(),
                secret: sec.into(),
            }),
            _ => Err("a token is NAME=SECRET with a secret of at least 8 characters".into()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FleetEntry {
    pub proxy: String,
    pub applied_version: Option<u64>,
    pub last_status: Option<String>,
    pub last_rejection: Option<String>,
    pub rejected_version: Option<u64>,
    #[serde(skip)]
    pub last_seen: Option<std::time::Instant>,
    pub last_seen_ms_ago: Option<u64>,
    pub watching: bool,
}

/// Shared state of the service.
pub struct Control {
    store: Arc<dyn Store>,
    pub(crate) write_lock: Mutex<()>,
    versions: RwLock<Vec<Arc<VersionRecord>>>,
    current: watch::Sender<Option<Arc<VersionRecord>>>,
    tokens: Vec<Token>,
    fleet: std::sync::Mutex<HashMap<String, FleetEntry>>,
    /// Rollout figures per region since its current step began.
    pub(crate) windows: std::sync::Mutex<HashMap<String, crate::rollout::Window>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("stored version {version} no longer compiles: {error}")]
    Stored { version: u64, error: ConfigError },
    #[error("seed table does not compile: {0}")]
    Seed(ConfigError),
}

impl Control {
    /// Loads the store; if it is empty and `seed` is given, stores it as version 1.
    pub async fn open(
        store: Arc<dyn Store>,
        tokens: Vec<Token>,
        seed: Option<TableSpec>,
    ) -> Result<Arc<Control>, StartError> {
        let records = store.load().await?;
        if let Some(last) = records.last() {
            compile(&last.table).map_err(|error| StartError::Stored {
                version: last.version,
                error,
            })?;
        }
        let (tx, _) = watch::channel(records.last().cloned().map(Arc::new));
        let control = Arc::new(Control {
            store,
            write_lock: Mutex::new(()),
            versions: RwLock::new(records.into_iter().map(Arc::new).collect()),
            current: tx,
            tokens,
            fleet: std::sync::Mutex::new(HashMap::new()),
            windows: std::sync::Mutex::new(HashMap::new()),
        });
        if control.latest().is_none() {
            if let Some(seed) = seed {
                compile(&seed).map_err(StartError::Seed)?;
                control
                    .commit("seed", "seed", seed, "initial table".into(), None)
                    .await
                    .map_err(|e| {
                        StartError::Store(crate::store::StoreError::Corrupt {
                            path: Default::default(),
                            reason: e.message,
                        })
                    })?;
            }
        }
        Ok(control)
    }

    pub fn latest(&self) -> Option<Arc<VersionRecord>> {
        self.current.borrow().clone()
    }

    /// The current version, or the API's 404 when nothing is stored yet.
    pub(crate) fn current_or_404(&self) -> Result<Arc<VersionRecord>, ApiError> {
        self.latest().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_table",
                "no table has been stored yet",
            )
        })
    }

    fn version(&self, v: u64) -> Option<Arc<VersionRecord>> {
        let versions = self.versions.read().ok()?;
        versions.iter().find(|r| r.version == v).cloned()
    }

    /// Stores a new version (already compiled by the caller) and pushes it.
    pub(crate) async fn commit(
        &self,
        actor: &str,
        action: &str,
        table: TableSpec,
        reason: String,
        restored: Option<u64>,
    ) -> Result<Arc<VersionRecord>, ApiError> {
        let prev = self.latest();
        let version = prev.as_ref().map_or(1, |p| p.version + 1);
        let summary = match &prev {
            Some(p) => diff::diff(&p.table, &table),
            None => vec!["initial table".into()],
        };
        let now = SystemTime::now();
        let record = VersionRecord {
            version,
            table,
            audit: Audit {
                actor: actor.into(),
                at_ms: now
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                at: humantime::format_rfc3339_millis(now).to_string(),
                action: action.into(),
                summary,
                reason,
                restored,
            },
        };
        self.store.append(&record).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_failed",
                format!("the change was not stored: {e}"),
            )
        })?;
        let record = Arc::new(record);
        if let Ok(mut v) = self.versions.write() {
            v.push(record.clone());
        }
        self.current.send_replace(Some(record.clone()));
        tracing::info!(
            version,
            actor,
            action,
            changes = record.audit.summary.len(),
            "table version committed"
        );
        Ok(record)
    }

    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let presented = bearer(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "writes need `Authorization: Bearer <token>`",
            )
        })?;
        token_name(&self.tokens, presented).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
        })
    }

    fn check_if_match(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let current = self.latest().map(|r| etag(r.version));
        if want.trim() == "*" || current.as_deref() == Some(want.trim()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale_version",
                format!("If-Match {want} does not match the current version {}; re-read the table and retry", current.unwrap_or_else(|| "(none)".into())),
            ))
        }
    }

    fn note_proxy(&self, proxy: &str, f: impl FnOnce(&mut FleetEntry)) {
        if let Ok(mut fleet) = self.fleet.lock() {
            let e = fleet
                .entry(proxy.to_string())
                .or_insert_with(|| FleetEntry {
                    proxy: proxy.to_string(),
                    applied_version: None,
                    last_status: None,
                    last_rejection: None,
                    rejected_version: None,
                    last_seen: None,
                    last_seen_ms_ago: None,
                    watching: false,
                });
            e.last_seen = Some(std::time::Instant::now());
            f(e);
        }
    }
}

fn etag(version: u64) -> String {
    format!("\"v{version}\"")
}

/// An API error: status, a stable code, a message, and field errors.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    errors: Vec<FieldError>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn from_config(e: ConfigError) -> Self {
        match &e {
            ConfigError::Parse(f) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "malformed_table",
                message: format!("{}: {}", f.path, f.reason),
                errors: e.errors().to_vec(),
            },
            ConfigError::Invalid(v) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_table",
                message: format!("{} error(s); the current table is unchanged", v.len()),
                errors: v.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.code, "message": self.message, "errors": self.errors })),
        )
            .into_response()
    }
}

pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body over the limit: {e}"),
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string())
    }
}

/// Parses a JSON body, naming the field at fault.
/// The common start of every write: the actor from the bearer token, then
/// the JSON body (size-limited, unknown fields refused, paths named).
pub(crate) fn write_request<T: for<'de> Deserialize<'de>>(
    c: &Control,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, T), ApiError> {
    let actor = c.authenticate(headers)?;
    let body = body.map_err(body_error)?;
    Ok((actor, json_body(&body)?))
}

pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error_free(&mut de).map_err(|(path, msg)| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "malformed_request",
        message: format!("{path}: {msg}"),
        errors: vec![FieldError::new(path, msg)],
    })
}

fn serde_path_to_error_free<'de, T: Deserialize<'de>>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, (String, String)> {
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let p = e.path().to_string();
        (
            if p.is_empty() { ".".into() } else { p },
            e.into_inner().to_string(),
        )
    })?;
    de.end().map_err(|e| (".".to_string(), e.to_string()))?;
    Ok(value)
}

/// The router; `body_limit` caps request bodies.
pub fn router(control: Arc<Control>, body_limit: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/table", get(get_table).put(put_table))
        .route("/v1/regions/{region}", patch(patch_region))
        .route("/v1/rollback", post(rollback))
        .route("/v1/history", get(history))
        .route("/v1/versions/{version}", get(get_version))
        .route("/v1/diff", get(get_diff))
        .route("/v1/watch", get(watch_table))
        .route("/v1/fleet", get(fleet))
        .route("/v1/fleet/ack", post(ack))
        .route("/v1/stats", post(crate::rollout::post_stats))
        .route("/v1/rollouts", get(crate::rollout::get_rollouts))
        .route("/v1/rollouts/{region}", post(crate::rollout::post_rollout))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(control)
}

fn record_json(r: &VersionRecord) -> serde_json::Value {
    json!({ "version": r.version, "etag": etag(r.version), "table": r.table, "audit": r.audit })
}

fn with_etag(r: &VersionRecord, status: StatusCode) -> Response {
    (
        status,
        [(header::ETAG, etag(r.version))],
        Json(record_json(r)),
    )
        .into_response()
}

async fn get_table(State(c): State<Arc<Control>>) -> Result<Response, ApiError> {
    let r = c.current_or_404()?;
    Ok(with_etag(&r, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutTable {
    table: serde_json::Value,
    #[serde(default)]
    reason: String,
}

async fn put_table(
    State(c): State<Arc<Control>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (actor, req): (String, PutTable) = write_request(&c, &headers, body)?;
    // Parse the table on its own so paths are relative to the table.
    let text = serde_json::to_vec(&req.table)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_table", e.to_string()))?;
    let spec = parse::from_json(&text).map_err(ApiError::from_config)?;
    compile(&spec).map_err(ApiError::from_config)?;
    let _guard = c.write_lock.lock().await;
    c.check_if_match(&headers)?;
    let r = c.commit(&actor, "replace", spec, req.reason, None).await?;
    Ok(with_etag(&r, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRegion {
    /// Backend address -> new weight.
    #[serde(default)]
    weights: HashMap<String, u32>,
    #[serde(default)]
    canary_bps: Option<u32>,
    #[serde(default)]
    drain: Option<bool>,
    #[serde(default)]
    reason: String,
}

async fn patch_region(
    State(c): State<Arc<Control>>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (actor, req): (String, PatchRegion) = write_request(&c, &headers, body)?;
    let _guard = c.write_lock.lock().await;
    c.check_if_match(&headers)?;
    let cur = c.current_or_404()?;
    let mut spec = cur.table.clone();
    let r = spec.regions.get_mut(&region).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        code: "unknown_region",
        message: format!("no region `{region}`"),
        errors: vec![FieldError::new(
            format!("regions.{region}"),
            "no such region",
        )],
    })?;
    let mut action = Vec::new();
    for (addr, w) in &req.weights {
        let b = r
            .backends
            .iter_mut()
            .find(|b| &b.address == addr)
            .ok_or_else(|| ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "unknown_backend",
                message: format!("region {region} has no backend `{addr}`"),
                errors: vec![FieldError::new(
                    format!("weights.{addr}"),
                    "no such backend in this region",
                )],
            })?;
        b.weight = *w;
        action.push("set-weight");
    }
    if let Some(bps) = req.canary_bps {
        r.canary_bps = bps;
        action.push("set-canary");
    }
    if let Some(d) = req.drain {
        r.drain = d;
        action.push("shift");
    }
    if action.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_change",
            "give weights, canary_bps or drain",
        ));
    }
    action.dedup();
    compile(&spec).map_err(ApiError::from_config)?;
    let rec = c
        .commit(&actor, &action.join("+"), spec, req.reason, None)
        .await?;
    Ok(with_etag(&rec, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    to: u64,
    #[serde(default)]
    reason: String,
}

async fn rollback(
    State(c): State<Arc<Control>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (actor, req): (String, Rollback) = write_request(&c, &headers, body)?;
    let target = c.version(req.to).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("no version {}", req.to),
        )
    })?;
    compile(&target.table).map_err(ApiError::from_config)?;
    let _guard = c.write_lock.lock().await;
    c.check_if_match(&headers)?;
    let rec = c
        .commit(
            &actor,
            "rollback",
            target.table.clone(),
            req.reason,
            Some(req.to),
        )
        .await?;
    Ok(with_etag(&rec, StatusCode::OK))
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(c): State<Arc<Control>>,
    Query(q): Query<HistoryQuery>,
) -> Json<serde_json::Value> {
    let limit = q.limit.unwrap_or(50);
    let versions = c
        .versions
        .read()
        .map(|v| {
            v.iter()
                .rev()
                .take(limit)
                .map(|r| json!({"version": r.version, "audit": r.audit}))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Json(json!({ "versions": versions }))
}

async fn get_version(
    State(c): State<Arc<Control>>,
    Path(v): Path<u64>,
) -> Result<Response, ApiError> {
    let r = c.version(v).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("no version {v}"),
        )
    })?;
    Ok(with_etag(&r, StatusCode::OK))
}

#[derive(Deserialize)]
struct DiffQuery {
    from: Option<u64>,
    to: Option<u64>,
}

async fn get_diff(
    State(c): State<Arc<Control>>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let latest = c.current_or_404()?;
    let to = q.to.unwrap_or(latest.version);
    let from = q.from.unwrap_or(to.saturating_sub(1));
    let get = |v| {
        c.version(v).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_version",
                format!("no version {v}"),
            )
        })
    };
    let (a, b) = (get(from)?, get(to)?);
    Ok(Json(
        json!({ "from": from, "to": to, "changes": diff::diff(&a.table, &b.table) }),
    ))
}

#[derive(Deserialize)]
struct WatchQuery {
    #[serde(default)]
    after: u64,
    proxy: Option<String>,
    timeout_ms: Option<u64>,
}

/// Long-poll: answers at once with the current table if it is newer than
/// `after`, else when one is committed, else 304 after `timeout_ms`.
async fn watch_table(State(c): State<Arc<Control>>, Query(q): Query<WatchQuery>) -> Response {
    if let Some(p) = &q.proxy {
        c.note_proxy(p, |e| e.watching = true);
    }
    let mut rx = c.current.subscribe();
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(25_000)).min(MAX_WATCH);
    let newer =
        |r: &Option<Arc<VersionRecord>>| r.as_ref().filter(|r| r.version > q.after).cloned();
    let found = {
        let now = rx.borrow_and_update().clone();
        newer(&now)
    };
    let found = match found {
        Some(r) => Some(r),
        None => tokio::time::timeout(wait, async {
            loop {
                if rx.changed().await.is_err() {
                    return None;
                }
                let now = rx.borrow_and_update().clone();
                if let Some(r) = newer(&now) {
                    return Some(r);
                }
            }
        })
        .await
        .ok()
        .flatten(),
    };
    match found {
        Some(r) => with_etag(&r, StatusCode::OK),
        None => StatusCode::NOT_MODIFIED.into_response(),
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub proxy: String,
    pub version: u64,
    /// `applied` or `rejected`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

async fn ack(
    State(c): State<Arc<Control>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(body_error)?;
    let a: Ack = json_body(&body)?;
    match a.status.as_str() {
        "applied" => c.note_proxy(&a.proxy, |e| {
            e.applied_version = Some(a.version);
            e.last_status = Some("applied".into());
        }),
        "rejected" => {
            tracing::warn!(proxy = %a.proxy, version = a.version, reason = ?a.reason, "a proxy rejected a table version");
            c.note_proxy(&a.proxy, |e| {
                e.last_status = Some("rejected".into());
                e.last_rejection = a.reason.clone();
                e.rejected_version = Some(a.version);
            })
        }
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!("status `{other}` is not applied or rejected"),
            ))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn fleet(State(c): State<Arc<Control>>) -> Json<serde_json::Value> {
    let latest = c.latest().map(|r| r.version);
    let mut list: Vec<FleetEntry> = c
        .fleet
        .lock()
        .map(|f| f.values().cloned().collect())
        .unwrap_or_default();
    for e in &mut list {
        e.last_seen_ms_ago = e.last_seen.map(|t| t.elapsed().as_millis() as u64);
    }
    list.sort_by(|a, b| a.proxy.cmp(&b.proxy));
    Json(json!({ "current_version": latest, "proxies": list }))
}
