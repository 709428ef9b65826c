//! Admission, the first thing a request meets: who the client is (the
//! peer, or the right-most untrusted `X-Forwarded-For`/`Forwarded` hop),
//! then the abuse block list and the table's rate-limit policies.

use std::net::{IpAddr, Ipv4Addr};

use edgesteer_ratelimit::Outcome;
use pingora_core::Result;
use pingora_proxy::Session;

use super::ctx::{host_of, Ctx};
use super::refusal::{Refusal, RefusalKind};
use crate::steer::Steering;
use edgesteer_config::client_ip::client_ip;

/// Resolves the client address into `ctx`, then applies the block list and
/// rate limits. Returns true when the request was refused and answered.
pub(super) async fn admit(steer: &Steering, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let downstream = session.as_downstream();
    let peer = downstream
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    ctx.tls = downstream.digest().is_some_and(|d| d.ssl_digest.is_some());
    ctx.client = client_ip(peer, &session.req_header().headers, &ctx.snap.table);
    if ctx.snap.table.rate_limits.is_empty() && steer.limiter.block_count() == 0 {
        return Ok(false);
    }
    let Some((kind, refusal)) = rate_limit(steer, session, ctx) else {
        return Ok(false);
    };
    ctx.refusal = Some(kind);
    refusal.write(session).await?;
    Ok(true)
}

/// Applies the block list and the table's policies; the refusal to send,
/// if any. Counts refusals.
fn rate_limit(
    steer: &Steering,
    session: &Session,
    ctx: &mut Ctx,
) -> Option<(RefusalKind, Refusal)> {
    let snap = &*ctx.snap;
    let req = session.req_header();
    let outcome = steer.limiter.evaluate(
        &snap.limits,
        &snap.table.rate_limits,
        &edgesteer_ratelimit::Request {
            client: ctx.client,
            host: host_of(req),
            path: req.uri.path(),
            headers: &req.headers,
        },
        ctx.start,
    );
    match outcome {
        Outcome::Allowed(q) => {
            ctx.limit = q;
            None
        }
        Outcome::Limited(q) => {
            if let Some(c) = snap.rate_limited.get(q.policy).and_then(|t| t.get(q.tier)) {
                c.inc();
            }
            Some((RefusalKind::RateLimited, Refusal::rate_limited(snap, &q)))
        }
        Outcome::Blocked { retry_after_s } => {
            steer.metrics.blocked();
            // Off the hot path: the block's own reason, read again.
            let reason = steer.limiter.blocked(ctx.client).map(|b| b.reason);
            Some((
                RefusalKind::AbuseBlocked,
                Refusal::blocked(retry_after_s, reason.as_deref()),
            ))
        }
        Outcome::StoreUnavailable { policy } => {
            if let Some(c) = snap.store_refusals.get(policy) {
                c.inc();
            }
            let name = snap
                .table
                .rate_limits
                .get(policy)
                .map_or("", |p| p.name.as_str());
            Some((RefusalKind::LimitStoreDown, Refusal::store_down(name)))
        }
    }
}
