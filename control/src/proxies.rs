//! Handlers of the endpoints proxies call (the watch long-poll, acks, stats
//! reports) and of the fleet view built from them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;

use crate::http::{parse_body, tagged, ApiError};
use crate::state::Control;
use crate::store::VersionRecord;
use edgesteer_control_api::api::{check_proxy_name, Ack, Fleet, StatsReport, WatchQuery};
use edgesteer_control_api::auth::Role;
use edgesteer_control_api::Caller;

/// Longest a watch request is held open.
const MAX_WATCH: Duration = Duration::from_secs(60);

/// Checks the `proxy` a request names: well formed (400 naming the field
/// `proxy`) and, for a `proxy` caller, the caller's own name (its token's
/// or its certificate's; 403 otherwise), so no proxy speaks for another.
fn own_name(c: &Control, caller: &Caller, name: &str, what: &str) -> Result<(), ApiError> {
    check_proxy_name(name).map_err(|reason| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("proxy: {reason}"),
        )
        .at("proxy", reason)
    })?;
    if caller.role == Role::Proxy && caller.name != name {
        c.forbidden
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(caller = %caller.name, claimed = name, what, "refused: a proxy spoke for another proxy");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "proxy `{}` may {what} only as itself, not as `{name}`: give each proxy a token named after it (--token proxy:NAME=SECRET) and the same --name, or a client certificate listed with --cert-proxy",
                caller.name
            ),
        )
        .at("proxy", format!("must be `{}`", caller.name)));
    }
    Ok(())
}

/// Long-poll: answers at once with the current table if it is newer than
/// `after` (or the proxy's version is of another store epoch), else when
/// one is committed, else 304 after `timeout_ms`.
pub(crate) async fn watch_table(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        crate::http::malformed_part(
            e.body_text(),
            "after, timeout_ms",
            "a version number and milliseconds",
        )
    })?;
    if let Some(p) = &q.proxy {
        own_name(&c, &caller, p, "watch")?;
    }
    // Only proxies are listed in the fleet: an operator's or the
    // console's watch (a `read` or `ops` token) is served, not registered.
    if caller.role == Role::Proxy {
        let p = q.proxy.as_deref().unwrap_or(&caller.name);
        c.fleet.watching(p);
        c.share_fleet(p);
    }
    let mut rx = c.subscribe();
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(25_000)).min(MAX_WATCH);
    // A version of another epoch says nothing about ours: any is newer.
    let other_epoch = q.epoch.as_deref().is_some_and(|e| e != c.epoch);
    let newer = |r: &Option<Arc<VersionRecord>>| {
        r.as_ref()
            .filter(|r| other_epoch || r.version > q.after)
            .cloned()
    };
    let found = {
        let now = rx.borrow_and_update().clone();
        newer(&now)
    };
    // On shutdown a held watch answers 304 at once, so it does not hold
    // the drain up; the proxy polls again (and finds the service gone).
    let mut closing = c.closing();
    let found = match found {
        Some(r) => Some(r),
        None if *closing.borrow_and_update() => None,
        None => tokio::time::timeout(wait, async {
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    _ = closing.changed() => return None,
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
    Ok(match found {
        Some(r) => tagged(&r, &c.epoch),
        None => StatusCode::NOT_MODIFIED.into_response(),
    })
}

pub(crate) async fn ack(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let a: Ack = parse_body(body)?;
    own_name(&c, &caller, &a.proxy, "ack")?;
    c.fleet.ack(&a).map_err(|bad| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_status",
            format!("status `{}` is not applied or rejected", bad.0),
        )
    })?;
    c.share_fleet(&a.proxy);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn fleet(State(c): State<Arc<Control>>) -> Json<Fleet> {
    Json(Fleet {
        current_version: c.latest().map(|r| r.version),
        proxies: c.whole_fleet().await,
    })
}

/// A proxy's per-track figures, folded into the running rollouts' windows.
pub(crate) async fn post_stats(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let report: StatsReport = parse_body(body)?;
    own_name(&c, &caller, &report.proxy, "send stats")?;
    report.check().map_err(|(path, reason)| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("{path}: {reason}; nothing of this report was kept"),
        )
        .at(path, reason)
    })?;
    c.ingest_stats(&report);
    c.share_stats(&report);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /metrics`: the service's own counters, in Prometheus text format.
pub(crate) async fn metrics(State(c): State<Arc<Control>>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let version = c.latest().map_or(0, |r| r.version);
    let body = format!(
        "# HELP edgesteer_control_auth_failures_total Requests refused by the access check, by reason.\n\
         # TYPE edgesteer_control_auth_failures_total counter\n\
         edgesteer_control_auth_failures_total{{reason=\"unauthenticated\"}} {}\n\
         edgesteer_control_auth_failures_total{{reason=\"forbidden\"}} {}\n\
         # HELP edgesteer_control_connections_open Connections open on the service's listener.\n\
         # TYPE edgesteer_control_connections_open gauge\n\
         edgesteer_control_connections_open {}\n\
         # HELP edgesteer_control_connections_refused_total Connections closed at accept because --max-connections were open.\n\
         # TYPE edgesteer_control_connections_refused_total counter\n\
         edgesteer_control_connections_refused_total {}\n\
         # HELP edgesteer_control_tls_handshake_failures_total TLS handshakes that failed or timed out.\n\
         # TYPE edgesteer_control_tls_handshake_failures_total counter\n\
         edgesteer_control_tls_handshake_failures_total {}\n\
         # HELP edgesteer_control_table_version The newest stored version.\n\
         # TYPE edgesteer_control_table_version gauge\n\
         edgesteer_control_table_version {version}\n\
         # HELP edgesteer_control_rollout_leader 1 on the replica that runs the rollout controller.\n\
         # TYPE edgesteer_control_rollout_leader gauge\n\
         edgesteer_control_rollout_leader {}\n",
        c.unauthenticated.load(Relaxed),
        c.forbidden.load(Relaxed),
        c.conn_stats.open.load(Relaxed),
        c.conn_stats.refused.load(Relaxed),
        c.conn_stats.handshake_failures.load(Relaxed),
        u8::from(c.is_leader()),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
