//! The admin endpoints' handlers: each reads the live snapshot (or the
//! limiter) and returns an [`Answer`]. Routing and the token check are in
//! the parent module.

use http::StatusCode;
use serde_json::json;

use super::Answer;
use crate::steer::Steering;

/// The Prometheus text, with each backend's availability set first.
pub(super) fn metrics(steer: &Steering) -> String {
    steer.metrics.observe(&steer.limiter);
    let snap = steer.current();
    for (state, b) in snap.health.states().iter().zip(&snap.table.backends) {
        let region = &snap.table.region(b.region).name;
        steer
            .metrics
            .backend_healthy
            .with_label_values(&[region.as_str(), b.key.as_str()])
            .set(i64::from(state.is_available()));
    }
    steer.metrics.render()
}

pub(super) fn health(steer: &Steering) -> Answer {
    let snap = steer.current();
    Answer::json(StatusCode::OK, &snap.health.status(&snap.table))
}

/// `?ip=ADDR[&host=HOST][&key=KEY][&path=PATH]`: where that request would go.
pub(super) fn explain(steer: &Steering, query: Option<&str>) -> Answer {
    match serde_urlencoded::from_str::<crate::explain::Query>(query.unwrap_or("")) {
        Ok(q) => Answer::json(
            StatusCode::OK,
            &crate::explain::explain(&steer.current(), &steer.geo, &steer.limiter, &q),
        ),
        Err(e) => Answer::error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{e}; use ?ip=ADDR[&host=HOST][&key=KEY]"),
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
pub(super) fn ratelimit(steer: &Steering) -> Answer {
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
    Answer::json(
        StatusCode::OK,
        &json!({
            "version": snap.version,
            "policies": policies,
            "store": steer.limiter.store_snapshot(),
            "blocks": steer.limiter.blocks(),
        }),
    )
}

pub(super) fn blocks(steer: &Steering) -> Answer {
    Answer::json(StatusCode::OK, &json!({ "blocks": steer.limiter.blocks() }))
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
pub(super) fn add_block(steer: &Steering, actor: &str, body: &[u8]) -> Answer {
    let req: BlockRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{e}; send {{\"ip\": ADDR, \"seconds\": N, \"reason\": TEXT}}"),
            )
        }
    };
    let seconds = req.seconds.unwrap_or(3600);
    if seconds == 0 || seconds > 30 * 86_400 {
        return Answer::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": "invalid", "field": "seconds", "message": "seconds must be between 1 and 2592000 (30 days)" }),
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
        return Answer::error(
            StatusCode::CONFLICT,
            "block_list_full",
            format!(
                "the block list holds {} addresses; lift some first",
                edgesteer_ratelimit::blocklist::MAX_BLOCKS
            ),
        );
    }
    Answer::json(
        StatusCode::CREATED,
        &json!({ "blocked": edgesteer_ratelimit::limiter::client_unit(req.ip), "seconds": seconds }),
    )
}

/// Lifts a block here, and (with a shared store) across the fleet.
pub(super) fn lift_block(steer: &Steering, actor: &str, ip: &str) -> Answer {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "bad_address",
            format!("`{ip}` is not an IP address"),
        );
    };
    match steer.limiter.unblock(addr) {
        Some(b) => {
            tracing::info!(ip = %addr, actor, "block lifted from the admin API");
            Answer::json(StatusCode::OK, &json!({ "lifted": b }))
        }
        // Not here, but the lift went to the fleet: another proxy may have it.
        None if steer.limiter.shares_blocks() => Answer::json(
            StatusCode::ACCEPTED,
            &json!({ "lifted": null, "message": format!("{addr} is not on this proxy's block list; the lift was sent to the fleet") }),
        ),
        None => Answer::error(
            StatusCode::NOT_FOUND,
            "not_blocked",
            format!("{addr} is not on the block list"),
        ),
    }
}

/// The version served, without the table (cheap to poll).
pub(super) fn version(steer: &Steering) -> Answer {
    Answer::json(
        StatusCode::OK,
        &json!({ "version": steer.current().version }),
    )
}

pub(super) fn table(steer: &Steering) -> Answer {
    let snap = steer.current();
    Answer::json(
        StatusCode::OK,
        &json!({
            "version": snap.version,
            "table": redacted(&snap.spec),
        }),
    )
}
