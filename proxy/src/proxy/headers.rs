//! Header edits: `X-Forwarded-For`/`-Proto` toward the origin, and the
//! `X-Steer-*` and `RateLimit` headers toward the client.

use http::HeaderName;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::ctx::Ctx;
use crate::steer::Steering;

/// Forwarding headers a client could use to tell the origin something
/// false about itself; only a trusted proxy's are passed on.
static CLIENT_FORWARDING: [HeaderName; 5] = [
    http::header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    X_FORWARDED_PROTO,
];
/// Looked up by these (a `&str` name is parsed on every lookup).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `X-Forwarded-For` and `X-Forwarded-Proto` for the origin. A trusted
/// peer's chain is extended (every `X-Forwarded-For` line, in order: the
/// chain the client address was read from); anyone else's is replaced,
/// and their other forwarding headers are dropped.
pub(super) fn forwarded(session: &Session, upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    let peer = session
        .as_downstream()
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let trusted = peer.is_some_and(|p| ctx.snap.table.is_trusted_proxy(p));
    if !trusted {
        for name in &CLIENT_FORWARDING {
            // One lookup for the usual absent header; removing also
            // touches Pingora's case map.
            if upstream.headers.contains_key(name) {
                upstream.remove_header(name);
            }
        }
    }
    let xff = match (trusted, peer) {
        (true, Some(p)) => {
            let mut chain = String::new();
            for line in upstream.headers.get_all(&X_FORWARDED_FOR) {
                chain.push_str(line.to_str().unwrap_or(""));
                chain.push_str(", ");
            }
            chain.push_str(&p.to_string());
            chain
        }
        (_, Some(p)) => p.to_string(),
        (_, None) => ctx.client.to_string(),
    };
    upstream.insert_header("x-forwarded-for", xff)?;
    if !(trusted && upstream.headers.contains_key(&X_FORWARDED_PROTO)) {
        upstream.insert_header("x-forwarded-proto", if ctx.tls { "https" } else { "http" })?;
    }
    Ok(())
}

/// `RateLimit-Policy`/`RateLimit` when the policy asks for them, and
/// `X-Steer-Region` (plus track and version when the table says so). Also
/// observes the upstream's time to the response head.
pub(super) fn steer_headers(
    steer: &Steering,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
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
        let head = t.elapsed();
        if let Some(m) = snap
            .region_metrics(route.map(|r| r.region.index()))
            .filter(|_| steer.record_metrics)
        {
            m.upstream_response.observe(head.as_secs_f64());
        }
        ctx.upstream_head = Some(head);
    }
    Ok(())
}
