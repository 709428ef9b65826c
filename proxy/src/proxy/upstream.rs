//! The upstream hop: the peer for each attempt (on a retry, a fresh
//! decision on the same snapshot that excludes the backends already
//! tried), its timeouts, the retry budget, and what each attempt tells
//! passive outlier detection.

use std::time::{Duration, Instant};

use edgesteer_config::route::{decide, Decision, Request, Route};
use edgesteer_health::Outcome;
use pingora_core::prelude::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::Session;

use super::ctx::{Ctx, RouteState};
use super::route::fail_closed;
use crate::steer::Steering;

/// The peer for this attempt.
pub(super) fn peer(steer: &Steering, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
    let route = match ctx.route {
        RouteState::Decided(r) => r,
        RouteState::Sent(prev) => retry_route(steer, ctx, prev)?,
        RouteState::None => redecide(steer, ctx)?,
    };
    ctx.send(route);
    let snap = &*ctx.snap;
    let Some(addr) = snap.health.state(route.backend).and_then(|s| {
        s.pick(ctx.sticky, ctx.avoided())
            .or_else(|| s.pick(ctx.sticky, &[]))
    }) else {
        return Error::e_explain(ErrorType::ConnectNoRoute, "backend has no resolved address");
    };
    ctx.peer_addr = Some(addr);
    let retry = &snap.table.retry;
    // One clock read: the time left, and the attempt's start.
    let now = Instant::now();
    let remaining = retry
        .total_timeout
        .saturating_sub(now.saturating_duration_since(ctx.start));
    if remaining.is_zero() {
        return Error::e_explain(
            ErrorType::HTTPStatus(504),
            "total upstream timeout exhausted",
        );
    }
    let per_try = retry.per_try_timeout.min(remaining);
    let mut peer = match snap.upstream.get(route.region.index()) {
        Some(up) if up.tls => {
            let host = snap
                .backend_hosts
                .get(route.backend.index())
                .map_or("", String::as_str);
            tls_peer(addr, up, host)
        }
        Some(up) => {
            let mut p = HttpPeer::new(addr, false, String::new());
            // h2c (prior knowledge) when the table says so.
            p.options.alpn = up.alpn.clone();
            h2_options(&mut p, up);
            p
        }
        None => HttpPeer::new(addr, false, String::new()),
    };
    let connect = retry.connect_timeout.min(per_try);
    // Cut by the time the request has left, not by the table's own limits.
    ctx.connect_clipped = remaining < retry.connect_timeout.min(retry.per_try_timeout);
    peer.options.connection_timeout = Some(connect);
    peer.options.total_connection_timeout = Some(connect);
    peer.options.read_timeout = Some(per_try);
    peer.options.write_timeout = Some(per_try);
    // No idle timer on pooled connections: Pingora's pool watches each
    // one and drops it when the origin closes it, and holds at most its
    // size; TCP keep-alive finds an origin that vanished without a word,
    // and keeps NAT and load-balancer mappings open meanwhile. An idle
    // timeout would set and cancel a timer on every request (1.8% CPU).
    peer.options.idle_timeout = None;
    peer.options.tcp_keepalive = Some(origin_keepalive());
    // What a slow reader may hold here (vendor/README.md: Pingora patch).
    let buffer = snap.table.limits.response_buffer_bytes;
    peer.options.response_buffer_limit = Some(buffer as usize);
    ctx.upstream_start = Some(now);
    Ok(Box::new(peer))
}

/// TCP keep-alive on origin connections: probes after 60 s idle, every
/// 10 s, dead after 3 unanswered (about 90 s). Set once per connection;
/// the kernel keeps the timer.
fn origin_keepalive() -> pingora_core::protocols::TcpKeepalive {
    pingora_core::protocols::TcpKeepalive {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        count: 3,
        #[cfg(target_os = "linux")]
        user_timeout: Duration::ZERO,
    }
}

/// A TLS handshake with an origin failed: a connect failure (passive
/// health, retry), counted and logged with its reason.
fn tls_failed(steer: &Steering, ctx: &Ctx, e: &Error) {
    let text = e.to_string();
    let reason = crate::origin::tls_reason(&text);
    let label = match reason {
        "unknown CA" => "unknown_ca",
        "name mismatch" => "name_mismatch",
        "expired" => "expired",
        _ => "handshake",
    };
    let region = ctx
        .route
        .sent()
        .map_or("none", |r| ctx.snap.table.region(r.region).name.as_str());
    steer
        .metrics
        .upstream_tls_errors
        .with_label_values(&[region, label])
        .inc();
    tracing::warn!(
        backend = ?ctx.peer_addr,
        region,
        reason,
        error = %text,
        "TLS to origin failed"
    );
}

/// A TLS peer: the server name (the table's, else the backend's host),
/// verification, the region's CA and client certificate, and ALPN.
fn tls_peer(
    addr: std::net::SocketAddr,
    up: &crate::origin::RegionUpstream,
    host: &str,
) -> HttpPeer {
    let mut p = HttpPeer::new(addr, true, up.server_name(host).to_string());
    p.options.verify_cert = up.verify;
    p.options.verify_hostname = up.verify;
    p.options.ca = up.ca.clone();
    p.client_cert_key = up.client.clone();
    p.options.alpn = up.alpn.clone();
    // Pingora's pool key has the address, SNI, client certificate and
    // verification flags, not the CA: a connection verified against one
    // region's CA must not serve another region (same backend and SNI,
    // another CA), nor outlive a CA rotation. The settings' fingerprint
    // (CA bytes included) keeps them apart.
    p.group_key = up.fingerprint;
    h2_options(&mut p, up);
    p
}

/// HTTP/2 streams per connection, and the flow-control windows: a stream's
/// bounds what a client that stops reading holds here of its answer (the
/// pipe's budget waits while the origin fills it); the connection's holds
/// every stream's, so stalled streams cannot use up the window another is
/// still reading from (Pingora's default, 8 MiB each, lets one stalled
/// request buffer its whole answer, and eight of 1 MiB starve the rest).
fn h2_options(p: &mut HttpPeer, up: &crate::origin::RegionUpstream) {
    p.options.max_h2_streams = up.max_h2_streams;
    p.options.h2_stream_window_size = Some(up.h2_stream_window);
    p.options.h2_connection_window_size = Some(up.h2_connection_window);
}

/// A retry: the failed endpoint is avoided from now on; the same backend
/// takes the retry while it has another available address (a DNS
/// backend's), else decide again without the backends already tried.
fn retry_route(steer: &Steering, ctx: &mut Ctx, prev: Route) -> Result<Route> {
    if let Some(failed) = ctx.peer_addr {
        ctx.avoid(failed);
    }
    let other = ctx
        .snap
        .health
        .state(prev.backend)
        .and_then(|s| s.pick_available(ctx.sticky, ctx.avoided()));
    match other {
        Some(_) => Ok(prev),
        None => redecide(steer, ctx),
    }
}

/// Decide again without the backends already tried.
fn redecide(steer: &Steering, ctx: &mut Ctx) -> Result<Route> {
    let Some(class) = ctx.class else {
        return Error::e_explain(ErrorType::InternalError, "request was not classified");
    };
    let request = Request {
        class,
        pin: ctx.pin,
        sticky: ctx.sticky,
        tried: ctx.tried(),
    };
    match decide(&ctx.snap.table, &request, &ctx.snap.health) {
        Decision::Route(r) => Ok(r),
        Decision::NoHealthyBackend { zone } => {
            // Every allowed candidate has been tried: the zone is
            // exhausted for this request. Fail closed, never cross.
            fail_closed(steer, ctx, zone);
            Error::e_explain(ErrorType::HTTPStatus(503), "every allowed backend failed")
        }
        Decision::PinOutsideZone { .. } => {
            Error::e_explain(ErrorType::HTTPStatus(421), "pin outside the client's zone")
        }
    }
}

/// Retries in flight across the proxy may be at most this share of the
/// requests in flight (Envoy's retry budget), so a brown-out cannot
/// multiply the load on what is left.
const RETRY_BUDGET_SHARE: f64 = 0.2;
/// ... but at least this many, so a quiet proxy can still retry.
const RETRY_BUDGET_MIN: i64 = 3;

/// Whether a connect failure is charged to the backend: not a connect or
/// handshake that ran out of the time the request had left (`clipped`:
/// the attempt's connect timeout was cut to it), rather than of its own.
fn backends_fault(clipped: bool, e: &ErrorType) -> bool {
    !(clipped
        && matches!(
            e,
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout
        ))
}

/// A connect failure (refused, timed out, TLS failed before any byte of
/// the request): nothing reached the backend, so any method may go
/// elsewhere, and it always does while attempts are left, whatever the
/// retry budget says. The budget bounds the extra load retries put on
/// backends that are failing requests; a request that was never sent puts
/// none there, and refusing it would turn a dead backend (or a killed
/// region, during the seconds before health checks notice) into client
/// errors while the failover region is healthy.
pub(super) fn connect_failed(steer: &Steering, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
    if backends_fault(ctx.connect_clipped, e.etype()) {
        passive(ctx, Outcome::ConnectFailure);
    }
    steer.metrics.connect_failures.inc();
    if matches!(
        e.etype(),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
    ) {
        tls_failed(steer, ctx, &e);
    }
    let retry = ctx.attempts_left();
    if retry {
        super::observe::attempt_failed(ctx);
    }
    e.set_retry(retry);
    e
}

/// An error after connecting. It counts against the backend when the
/// backend was at fault: an upstream error, except a timeout while the
/// client's body was still arriving (the origin waited on the client) or
/// once an answer had started going out (the client may have stopped
/// reading). A client's own error (it stalled its upload, or hung up) is
/// the client's. An origin that resets during an upload is the origin's:
/// counted by passive health and the rollout gates like any reset.
/// Retries only what the backend failed and cannot have had an effect
/// twice: an idempotent request whose body we still hold, before any
/// response went out.
pub(super) fn proxy_failed(
    steer: &Steering,
    peer: &HttpPeer,
    session: &mut Session,
    e: Box<Error>,
    ctx: &mut Ctx,
) -> Box<Error> {
    let answering = session.response_written().is_some();
    // A request without a body was sent whole; Pingora's body reader may
    // not have looked at it yet, so ask "empty" before "done".
    let sent_whole = session.is_body_empty() || session.is_body_done();
    let upstream = matches!(e.esource(), ErrorSource::Upstream);
    let timeout = is_timeout(e.etype());
    // Before the body was in: the client's error, or a wait that ran out
    // while the client was still sending, says nothing of the origin.
    let client_fault = !sent_whole && (!upstream || timeout);
    let backend_fault = upstream && !client_fault && !(answering && timeout);
    if backend_fault {
        passive(ctx, Outcome::Reset);
    }
    if client_fault {
        ctx.client_fault = true;
    }
    let mut e = e.more_context(format!("Peer: {peer}"));
    let safe = session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
        && !answering;
    let retry = backend_fault && safe && ctx.attempts_left() && take_retry(steer, ctx);
    if retry {
        super::observe::attempt_failed(ctx);
    }
    e.set_retry(retry);
    e
}

pub(super) fn is_timeout(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    )
}

/// Takes one retry from the proxy-wide budget, if it has one left.
fn take_retry(steer: &Steering, ctx: &mut Ctx) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let active = steer.metrics.downstream_active.get();
    let budget = ((active as f64 * RETRY_BUDGET_SHARE) as i64).max(RETRY_BUDGET_MIN);
    if steer.retries_active.fetch_add(1, Relaxed) >= budget {
        steer.retries_active.fetch_sub(1, Relaxed);
        steer.metrics.retries_refused.inc();
        return false;
    }
    ctx.retries_held += 1;
    true
}

/// Gives back the request's retries to the budget (when it is over).
pub(super) fn release_retries(steer: &Steering, ctx: &mut Ctx) {
    if ctx.retries_held > 0 {
        steer
            .retries_active
            .fetch_sub(ctx.retries_held, std::sync::atomic::Ordering::Relaxed);
        ctx.retries_held = 0;
    }
}

/// Connect time, from handing out the peer to holding a connection (near
/// zero when a pooled connection was reused), and the active gauge.
pub(super) fn connected(steer: &Steering, reused: bool, ctx: &mut Ctx) {
    if let Some(t) = ctx.upstream_start {
        let m = ctx
            .snap
            .region_metrics(ctx.route.route().map(|r| r.region.index()));
        if let Some(m) = m.filter(|_| steer.record_metrics) {
            m.upstream_connect.observe(if reused {
                0.0
            } else {
                t.elapsed().as_secs_f64()
            });
        }
    }
    if !ctx.upstream_held {
        ctx.upstream_held = true;
        steer.metrics.upstream_active.inc();
    }
}

/// Feeds an attempt's outcome to passive outlier detection.
pub(super) fn passive(ctx: &Ctx, outcome: Outcome) {
    if let (Some(route), Some(addr)) = (ctx.route.sent(), ctx.peer_addr) {
        let snap = &ctx.snap;
        snap.health.report(
            route.backend,
            addr,
            outcome,
            &snap.table.outlier,
            route.region,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A late retry's connect timeout is cut to the request's time left:
    /// running out of that is the request's deadline, not the backend's
    /// fault; refusals, TLS failures and its own timeout are.
    /// Two regions whose TLS settings differ only in their CA (their
    /// fingerprint) never share a pooled connection.
    #[test]
    fn tls_settings_that_differ_pool_apart() {
        use pingora_core::upstreams::peer::Peer;
        let settings = edgesteer_config::model::UpstreamSettings {
            tls: true,
            ..Default::default()
        };
        let a = crate::origin::RegionUpstream::new(&settings);
        let mut b = crate::origin::RegionUpstream::new(&settings);
        let addr: std::net::SocketAddr = "127.0.0.1:443".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            tls_peer(addr, &a, "origin").reuse_hash(),
            tls_peer(addr, &b, "origin").reuse_hash()
        );
        b.fingerprint ^= 1;
        assert_ne!(
            tls_peer(addr, &a, "origin").reuse_hash(),
            tls_peer(addr, &b, "origin").reuse_hash()
        );
    }

    #[test]
    fn a_connect_cut_short_by_the_request_deadline_is_not_the_backends_fault() {
        for e in [ErrorType::ConnectTimedout, ErrorType::TLSHandshakeTimedout] {
            assert!(!backends_fault(true, &e), "{e:?}");
            assert!(backends_fault(false, &e), "{e:?}");
        }
        for e in [ErrorType::ConnectRefused, ErrorType::TLSHandshakeFailure] {
            assert!(backends_fault(true, &e), "{e:?}");
        }
    }
}
