//! Header edits: `X-Forwarded-For`/`-Proto` toward the origin, and the
//! `X-Steer-*` and `RateLimit` headers toward the client.

use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::ctx::Ctx;
use crate::steer::Steering;

/// `X-Forwarded-For` and `X-Forwarded-Proto` for the origin. A trusted
/// peer's chain is extended; anyone else's is replaced.
pub(super) fn forwarded(session: &Session, upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    let peer = session
        .as_downstream()
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let trusted = peer.is_some_and(|p| ctx.snap.table.is_trusted_proxy(p));
    let xff = match (trusted, upstream.headers.get("x-forwarded-for"), peer) {
        (true, Some(prev), Some(p)) => format!("{}, {p}", prev.to_str().unwrap_or("")),
        (_, _, Some(p)) => p.to_string(),
        (_, _, None) => ctx.client.to_string(),
    };
    upstream.insert_header("x-forwarded-for", xff)?;
    if !(trusted && upstream.headers.contains_key("x-forwarded-proto")) {
        upstream.insert_header("x-forwarded-proto", if ctx.tls { "https" } else { "http" })?;
    }
    Ok(())
}

/// `RateLimit-Policy`/`RateLimit` when the policy asks for them, and
/// `X-Steer-Region` (plus track and version when the table says so). Also
/// observes the upstream's time to the response head.
pub(super) fn steer_headers(steer: &Steering, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    let snap = &*ctx.snap;
    if let Some(q) = &ctx.limit {
        if let (Some(policy), Some(p)) = (
            snap.limits.policy_header(q.policy, q.tier),
            snap.table.rate_limits.get(q.policy),
        ) {
            resp.insert_header("ratelimit-policy", policy.clone())?;
            let quota = p.tiers.get(q.tier).map_or(0, |t| t.rate);
            resp.insert_header(
                "ratelimit",
                edgesteer_ratelimit::ratelimit_header(&p.name, quota, &q.verdict),
            )?;
        }
    }
    let route = ctx.route.route();
    if let Some(route) = route {
        if let Some(v) = snap.region_header.get(route.region.index()) {
            resp.insert_header("x-steer-region", v.clone())?;
        }
        if snap.table.headers.track {
            resp.insert_header("x-steer-track", route.track.as_str())?;
        }
        if snap.table.headers.version {
            resp.insert_header("x-steer-version", snap.version_header.clone())?;
        }
    }
    if let Some(t) = ctx.upstream_start {
        if let Some(m) = snap
            .region_metrics(route.map(|r| r.region.index()))
            .filter(|_| steer.record_metrics)
        {
            m.upstream_response.observe(t.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
