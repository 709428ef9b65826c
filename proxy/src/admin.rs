//! The admin listener: `/healthz`, `/metrics`, the JSON views of the live
//! table, health, rate limits and `/v1/explain`, and the one write, the
//! abuse block list (`POST`/`DELETE /v1/ratelimit/blocks`, which need an
//! `--admin-token` when one is given). The routers only: the listeners
//! that serve them are [`crate::listener`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::steer::Steering;

pub fn router(steer: Arc<Steering>) -> Router {
    Router::new()
        .route("/v1/table", get(table))
        .route("/v1/version", get(version))
        .route("/v1/health", get(health))
        .route("/v1/explain", get(explain))
        .route("/v1/ratelimit", get(ratelimit))
        .route("/v1/ratelimit/blocks", get(blocks).post(add_block))
        .route(
            "/v1/ratelimit/blocks/{ip}",
            axum::routing::delete(lift_block),
        )
        .route_layer(axum::middleware::from_fn_with_state(steer.clone(), guard))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(steer)
}

/// `/healthz` and `/metrics` only, for a scraper's own listener.
pub fn metrics_router(steer: Arc<Steering>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(steer)
}

/// With `--admin-token`, every admin endpoint but `/healthz` and `/metrics`
/// needs a token: reads (the table, health, explain, limits) a `read` or
/// `ops` one, writes (the block list) an `ops` one. Without tokens the
/// listener is open, which start-up allows only on loopback.
async fn guard(
    State(steer): State<Arc<Steering>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use edgesteer_control::Access;
    if steer.admin_tokens.is_empty() {
        return next.run(req).await;
    }
    let access = match *req.method() {
        axum::http::Method::GET | axum::http::Method::HEAD => Access::Read,
        _ => Access::Write,
    };
    let token = edgesteer_control::bearer(req.headers())
        .and_then(|t| edgesteer_control::find_token(&steer.admin_tokens, t));
    let refusal = match token {
        None => Some((
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this admin endpoint needs `Authorization: Bearer <token>` (one of --admin-token)"
                .to_string(),
        )),
        Some(t) if !t.role.allows(access) => Some((
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "admin token {} has role {}, which may not do this",
                t.name,
                t.role.as_str()
            ),
        )),
        Some(_) => None,
    };
    match refusal {
        Some((status, error, message)) => {
            tracing::warn!(path = %req.uri().path(), error, "admin request refused");
            (
                status,
                Json(serde_json::json!({ "error": error, "message": message })),
            )
                .into_response()
        }
        None => next.run(req).await,
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    steer.metrics.observe_limiter(&steer.limiter);
    let snap = steer.current();
    for (state, b) in snap.health.states().iter().zip(&snap.table.backends) {
        let region = &snap.table.region(b.region).name;
        steer
            .metrics
            .backend_healthy
            .with_label_values(&[region.as_str(), b.key.as_str()])
            .set(i64::from(state.is_available()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        steer.metrics.render(),
    )
}

async fn health(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    let snap = steer.current();
    Json(snap.health.status(&snap.table))
}

async fn explain(
    State(steer): State<Arc<Steering>>,
    q: Result<
        axum::extract::Query<crate::explain::Query>,
        axum::extract::rejection::QueryRejection,
    >,
) -> impl IntoResponse {
    match q {
        Ok(axum::extract::Query(q)) => (
            StatusCode::OK,
            Json(crate::explain::explain(
                &steer.current(),
                &steer.geo,
                &steer.limiter,
                &q,
            )),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(
                serde_json::json!({ "error": "bad_query", "message": format!("{e}; use ?ip=ADDR[&host=HOST][&key=KEY]") }),
            ),
        ),
    }
}

/// The table as the admin listener shows it: hashed API keys as written,
/// plain ones only as the first 12 hex digits of their SHA-256.
fn redacted(spec: &edgesteer_config::TableSpec) -> edgesteer_config::TableSpec {
    let mut spec = spec.clone();
    for p in &mut spec.rate_limits {
        p.keys = std::mem::take(&mut p.keys)
            .into_iter()
            .map(|(k, t)| {
                if k.starts_with("sha256:") {
                    (k, t)
                } else {
                    // Only a prefix: a full unsalted hash of a weak key
                    // could be brute-forced from this unauthenticated view.
                    let h = edgesteer_config::ratelimit::hashed_key(&k);
                    (format!("{}...", h.get(..19).unwrap_or(&h)), t)
                }
            })
            .collect();
    }
    spec
}

/// Policies (keys tracked), the shared store and the block list.
async fn ratelimit(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    let snap = steer.current();
    let spec = redacted(&snap.spec);
    let policies: Vec<serde_json::Value> = snap
        .table
        .rate_limits
        .iter()
        .zip(spec.rate_limits.iter())
        .map(|(p, spec)| {
            let keys = steer
                .limiter
                .stats()
                .into_iter()
                .find(|s| s.policy == p.name);
            serde_json::json!({
                "policy": p.name,
                "spec": spec,
                "keys": keys.as_ref().map_or(0, |k| k.keys),
                "overflowed": keys.as_ref().map_or(0, |k| k.overflowed),
            })
        })
        .collect();
    Json(serde_json::json!({
        "version": snap.version,
        "policies": policies,
        "store": steer.limiter.store_snapshot(),
        "blocks": steer.limiter.blocks(),
    }))
}

/// The actor of an admin write, for logs (the guard has checked the token).
fn admin_write(
    steer: &Steering,
    headers: &axum::http::HeaderMap,
) -> Result<String, (StatusCode, Json<serde_json::Value>)> {
    if steer.admin_tokens.is_empty() {
        return Ok("admin".into());
    }
    edgesteer_control::bearer(headers)
        .and_then(|t| edgesteer_control::token_name(&steer.admin_tokens, t))
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({ "error": "unauthorized", "message": "admin writes need `Authorization: Bearer <token>` (one of --admin-token)" })),
            )
        })
}

async fn blocks(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    Json(serde_json::json!({ "blocks": steer.limiter.blocks() }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    ip: std::net::IpAddr,
    /// Default one hour.
    seconds: Option<u64>,
    reason: Option<String>,
}

/// Blocks an address by hand (`{"ip": "...", "seconds": 600, "reason": "..."}`).
async fn add_block(
    State(steer): State<Arc<Steering>>,
    headers: axum::http::HeaderMap,
    body: Result<Json<BlockRequest>, axum::extract::rejection::JsonRejection>,
) -> impl IntoResponse {
    let actor = match admin_write(&steer, &headers) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    serde_json::json!({ "error": "bad_request", "message": format!("{e}; send {{\"ip\": ADDR, \"seconds\": N, \"reason\": TEXT}}") }),
                ),
            )
        }
    };
    let seconds = req.seconds.unwrap_or(3600);
    if seconds == 0 || seconds > 30 * 86_400 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                serde_json::json!({ "error": "invalid", "field": "seconds", "message": "seconds must be between 1 and 2592000 (30 days)" }),
            ),
        );
    }
    let blocked = steer.limiter.block(
        req.ip,
        "admin",
        req.reason.unwrap_or_else(|| format!("blocked by {actor}")),
        std::time::Duration::from_secs(seconds),
        std::time::Instant::now(),
    );
    if !blocked {
        return (
            StatusCode::CONFLICT,
            Json(
                serde_json::json!({ "error": "block_list_full", "message": format!("the block list holds {} addresses; lift some first", edgesteer_ratelimit::blocklist::MAX_BLOCKS) }),
            ),
        );
    }
    (
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "blocked": edgesteer_ratelimit::limiter::client_unit(req.ip), "seconds": seconds }),
        ),
    )
}

async fn lift_block(
    State(steer): State<Arc<Steering>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(ip): axum::extract::Path<String>,
) -> impl IntoResponse {
    let actor = match admin_write(&steer, &headers) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                serde_json::json!({ "error": "bad_address", "message": format!("`{ip}` is not an IP address") }),
            ),
        );
    };
    match steer.limiter.unblock(addr) {
        Some(b) => {
            tracing::info!(ip = %addr, actor, "block lifted from the admin API");
            (StatusCode::OK, Json(serde_json::json!({ "lifted": b })))
        }
        // Not here, but the lift went to the fleet: another proxy may have it.
        None if steer.limiter.shares_blocks() => (
            StatusCode::ACCEPTED,
            Json(
                serde_json::json!({ "lifted": null, "message": format!("{addr} is not on this proxy's block list; the lift was sent to the fleet") }),
            ),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                serde_json::json!({ "error": "not_blocked", "message": format!("{addr} is not on the block list") }),
            ),
        ),
    }
}

/// The version served, without the table (cheap to poll).
async fn version(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    Json(serde_json::json!({ "version": steer.current().version }))
}

async fn table(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    let snap = steer.current();
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "version": snap.version,
            "table": redacted(&snap.spec),
        })),
    )
}
