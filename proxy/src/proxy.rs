//! The Pingora adapter: [`EdgeProxy`] implements `ProxyHttp` and does
//! nothing but read the request, call the pure pieces (client IP, geo,
//! classify, [`decide`]) and act on their answer.
//!
//! Phases:
//! - `request_filter`: load the snapshot once, find the client, classify
//!   it, and decide. Refusals (421 pin across zone, 503 zone exhausted) are
//!   answered here, before any upstream work.
//! - `upstream_peer`: the decided backend, or on a retry a fresh decision
//!   that excludes the backends already tried (same snapshot).
//! - `fail_to_connect` / `error_while_proxy`: retry within the budget.
//! - `upstream_request_filter`: `X-Forwarded-For` / `-Proto` upstream.
//! - `response_filter`: `X-Steer-Region` (and track/version if configured).
//! - `logging`: metrics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use edgesteer_config::model::StickySource;
use edgesteer_config::route::{decide, sticky_hash, Decision, Reason, Request, Route};
use edgesteer_config::{BackendId, ClientClass, RegionId};
use edgesteer_geo::{GeoLookup, GeoResult, LookupStatus};
use edgesteer_health::Outcome;
use http::HeaderMap;
use pingora_core::prelude::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::client_ip::client_ip;
use crate::steer::{Snapshot, Steering};

/// Most upstream attempts one request can make (the table caps it lower).
const MAX_TRIED: usize = 10;

pub struct EdgeProxy {
    steer: Arc<Steering>,
}

impl EdgeProxy {
    pub fn new(steer: Arc<Steering>) -> Self {
        EdgeProxy { steer }
    }
}

/// What a request was answered with, when not proxied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    PinOutsideZone,
    ZoneExhausted,
    RateLimited,
    AbuseBlocked,
    LimitStoreDown,
}

/// Per-request state.
pub struct Ctx {
    snap: Option<Arc<Snapshot>>,
    client: IpAddr,
    geo: GeoResult,
    class: Option<ClientClass>,
    pin: Option<RegionId>,
    sticky: u64,
    tried: [BackendId; MAX_TRIED],
    tried_len: usize,
    route: Option<Route>,
    /// Set when `upstream_peer` has handed out `route` and a retry must re-decide.
    route_used: bool,
    refusal: Option<Refusal>,
    /// The rate-limit quota to advertise on the response.
    limit: Option<edgesteer_ratelimit::Quota>,
    tls: bool,
    start: Instant,
    upstream_start: Option<Instant>,
    /// The endpoint of the current attempt, for passive health reports.
    peer_addr: Option<SocketAddr>,
    /// An upstream connection is held (counted in the active gauge).
    upstream_held: bool,
    /// Counted in the downstream active gauge.
    active: bool,
}

impl Ctx {
    fn tried(&self) -> &[BackendId] {
        self.tried.get(..self.tried_len).unwrap_or(&[])
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: None,
            client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            geo: GeoResult {
                country: None,
                continent: None,
                status: LookupStatus::NotFound,
            },
            class: None,
            pin: None,
            sticky: 0,
            tried: [BackendId(0); MAX_TRIED],
            tried_len: 0,
            route: None,
            route_used: false,
            refusal: None,
            limit: None,
            tls: false,
            start: Instant::now(),
            upstream_start: None,
            peer_addr: None,
            upstream_held: false,
            active: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.steer.metrics.downstream_active.inc();
        ctx.active = true;
        let snap = self.steer.current();
        let table = &snap.table;
        let downstream = session.as_downstream();
        let peer = downstream
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        ctx.tls = downstream.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.client = client_ip(peer, &session.req_header().headers, table);
        ctx.snap = Some(snap.clone());
        if (!table.rate_limits.is_empty() || self.steer.limiter.block_count() > 0)
            && self.rate_limit(session, ctx, &snap).await?
        {
            return Ok(true);
        }
        let req = session.req_header();
        ctx.geo = self.steer.geo.lookup(ctx.client);
        self.steer.metrics.geo_lookup(ctx.geo.status);
        let class = table.classify(ctx.geo.country, ctx.geo.continent);
        ctx.class = Some(class);
        ctx.pin = host_of(req).and_then(|h| table.pin_for_host(h));
        ctx.sticky = sticky_of(&snap, &req.headers, ctx.client);

        let decision = decide(
            table,
            &Request {
                class,
                pin: ctx.pin,
                sticky: ctx.sticky,
                tried: &[],
            },
            &snap.health,
        );
        match decision {
            Decision::Route(route) => {
                ctx.route = Some(route);
                Ok(false)
            }
            Decision::PinOutsideZone { pinned, zone } => {
                ctx.refusal = Some(Refusal::PinOutsideZone);
                let zone_name = zone.map_or("none", |z| snap.table.zone(z).name.as_str());
                self.steer
                    .metrics
                    .pin_refused
                    .with_label_values(&[zone_name])
                    .inc();
                let pinned = snap.table.region(pinned);
                let why = match (zone, pinned.zone) {
                    (Some(_), _) => {
                        format!("clients in zone {zone_name} may only be served inside it")
                    }
                    (None, Some(pz)) => format!(
                        "{} is in isolated zone {}",
                        pinned.name,
                        snap.table.zone(pz).name
                    ),
                    (None, None) => "it is outside this client's allowed regions".to_string(),
                };
                let body = format!(
                    "421 Misdirected Request: this host is pinned to region {}, and {why}\n",
                    pinned.name
                );
                respond(
                    session,
                    421,
                    "text/plain; charset=utf-8",
                    Bytes::from(body),
                    zone_name,
                )
                .await?;
                Ok(true)
            }
            Decision::NoHealthyBackend { zone } => {
                let zone_name = self.zone_exhausted(ctx, &snap, zone);
                respond(
                    session,
                    503,
                    "application/json",
                    zone_body(zone_name),
                    zone_name,
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(snap) = ctx.snap.clone() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "no routing snapshot on the request",
            );
        };
        let route = match (ctx.route, ctx.route_used) {
            (Some(r), false) => r,
            _ => {
                // A retry: decide again without the backends already tried.
                let Some(class) = ctx.class else {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "request was not classified",
                    );
                };
                let decision = decide(
                    &snap.table,
                    &Request {
                        class,
                        pin: ctx.pin,
                        sticky: ctx.sticky,
                        tried: ctx.tried(),
                    },
                    &snap.health,
                );
                match decision {
                    Decision::Route(r) => r,
                    Decision::NoHealthyBackend { zone } => {
                        // Every allowed candidate has been tried: the zone is
                        // exhausted for this request. Fail closed, never cross.
                        self.zone_exhausted(ctx, &snap, zone);
                        return Error::e_explain(
                            ErrorType::HTTPStatus(503),
                            "every allowed backend failed",
                        );
                    }
                    Decision::PinOutsideZone { .. } => {
                        return Error::e_explain(
                            ErrorType::HTTPStatus(421),
                            "pin outside the client's zone",
                        );
                    }
                }
            }
        };
        ctx.route = Some(route);
        ctx.route_used = true;
        if let Some(slot) = ctx.tried.get_mut(ctx.tried_len) {
            *slot = route.backend;
            ctx.tried_len += 1;
        }
        let Some(addr) = snap
            .health
            .state(route.backend)
            .and_then(|s| s.pick(ctx.sticky, &[]))
        else {
            return Error::e_explain(ErrorType::ConnectNoRoute, "backend has no resolved address");
        };
        ctx.peer_addr = Some(addr);
        let retry = &snap.table.retry;
        let remaining = retry.total_timeout.saturating_sub(ctx.start.elapsed());
        if remaining.is_zero() {
            return Error::e_explain(
                ErrorType::HTTPStatus(504),
                "total upstream timeout exhausted",
            );
        }
        let per_try = retry.per_try_timeout.min(remaining);
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(retry.connect_timeout.min(per_try));
        peer.options.total_connection_timeout = Some(retry.connect_timeout.min(per_try));
        peer.options.read_timeout = Some(per_try);
        peer.options.write_timeout = Some(per_try);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.passive(ctx, Outcome::ConnectFailure);
        // Nothing reached the backend, so any method may go elsewhere.
        e.set_retry(self.attempts_left(ctx));
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        _client_reused: bool,
    ) -> Box<Error> {
        let upstream_fault = matches!(e.esource(), pingora_core::ErrorSource::Upstream);
        if upstream_fault {
            self.passive(ctx, Outcome::Reset);
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        // Retry only what cannot have had an effect twice: an idempotent
        // request whose body we still hold, before any response went out.
        let safe = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        e.set_retry(upstream_fault && safe && self.attempts_left(ctx));
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.passive(ctx, Outcome::Status(upstream.status.as_u16()));
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Connect time: from handing out the peer to holding a connection
        // (near zero when a pooled connection was reused).
        if let (Some(t), Some(snap)) = (ctx.upstream_start, &ctx.snap) {
            let m = snap.region_metrics(ctx.route.map(|r| r.region.index()));
            if let Some(m) = m.filter(|_| self.steer.record_metrics) {
                m.upstream_connect.observe(if reused {
                    0.0
                } else {
                    t.elapsed().as_secs_f64()
                });
            }
        }
        if !ctx.upstream_held {
            ctx.upstream_held = true;
            self.steer.metrics.upstream_active.inc();
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora_http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let trusted = ctx.snap.as_ref().is_some_and(|s| {
            session
                .as_downstream()
                .client_addr()
                .and_then(|a| a.as_inet())
                .is_some_and(|a| s.table.is_trusted_proxy(a.ip()))
        });
        let peer = session
            .as_downstream()
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
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

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(snap), Some(q)) = (&ctx.snap, &ctx.limit) {
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
        if let (Some(snap), Some(route)) = (&ctx.snap, ctx.route) {
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
            if let Some(m) = ctx
                .snap
                .as_ref()
                .and_then(|s| s.region_metrics(ctx.route.map(|r| r.region.index())))
                .filter(|_| self.steer.record_metrics)
            {
                m.upstream_response.observe(t.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                pingora_core::ErrorSource::Upstream => 502,
                pingora_core::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        // The connection is not reused after an error; say so, so clients
        // do not race a request onto a closing connection.
        session.as_downstream_mut().set_keepalive(None);
        if code == 503 && ctx.refusal == Some(Refusal::ZoneExhausted) {
            let zone = ctx
                .snap
                .as_ref()
                .and_then(|s| {
                    ctx.class
                        .and_then(|c| c.zone)
                        .map(|z| s.table.zone(z).name.clone())
                })
                .unwrap_or_else(|| "none".into());
            if let Err(err) =
                respond(session, 503, "application/json", zone_body(&zone), &zone).await
            {
                tracing::debug!(error = %err, "cannot write error response downstream");
            }
        } else if code > 0 {
            let mut resp = match ResponseHeader::build(code, Some(3)) {
                Ok(r) => r,
                Err(_) => {
                    return FailToProxy {
                        error_code: code,
                        can_reuse_downstream: false,
                    }
                }
            };
            if let (Some(snap), Some(route)) = (&ctx.snap, ctx.route) {
                if let Some(v) = snap.region_header.get(route.region.index()) {
                    let _ = resp.insert_header("x-steer-region", v.clone());
                }
            }
            let _ = resp.insert_header("content-length", "0");
            let _ = resp.insert_header("cache-control", "private, no-store");
            if let Err(err) = session.write_response_header(Box::new(resp), true).await {
                tracing::debug!(error = %err, "cannot write error response downstream");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _error: &Error) -> bool {
        // A fail-closed 503 is a decision, already counted and logged as such.
        ctx.refusal == Some(Refusal::ZoneExhausted)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.active {
            self.steer.metrics.downstream_active.dec();
        }
        if ctx.upstream_held {
            self.steer.metrics.upstream_active.dec();
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let Some(snap) = &ctx.snap else { return };
        let region = ctx
            .route
            .filter(|_| ctx.route_used)
            .map(|r| r.region.index());
        let track = ctx.route.map_or(0, |r| r.track.index());
        let elapsed = ctx.start.elapsed();
        if let Some(m) = snap
            .region_metrics(region)
            .filter(|_| self.steer.record_metrics)
        {
            m.request(track, status);
            if let Some(h) = m.duration.get(track) {
                h.observe(elapsed.as_secs_f64());
            }
        }
        if let Some(s) = region
            .and_then(|r| snap.stats.get(r))
            .and_then(|s| s.tracks.get(track))
        {
            s.record(status, elapsed);
        }
        if snap.table.access_log {
            if let Some(log) = &self.steer.access_log {
                log.write(access_line(session, ctx, snap, status));
            }
        }
        let served = ctx.route.filter(|_| ctx.route_used);
        if let Some(route) = served.filter(|r| r.track_fallback) {
            let assigned = route.track.other();
            self.steer
                .metrics
                .track_fallbacks
                .with_label_values(&[&snap.table.region(route.region).name, assigned.as_str()])
                .inc();
        }
        if let (Some(route), Some(class)) = (served, ctx.class) {
            if matches!(route.reason, Reason::Failover | Reason::LatencyFallback) {
                let from = ctx.pin.unwrap_or(class.home);
                self.steer
                    .metrics
                    .failovers
                    .with_label_values(&[
                        &snap.table.region(from).name,
                        &snap.table.region(route.region).name,
                        route.reason.as_str(),
                    ])
                    .inc();
            }
        }
    }
}

impl EdgeProxy {
    /// Applies the table's rate-limit policies; answers and returns true
    /// when the request is refused.
    async fn rate_limit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Result<bool> {
        use edgesteer_ratelimit::Outcome;
        let table = &snap.table;
        let outcome = {
            let req = session.req_header();
            self.steer.limiter.evaluate(
                &snap.limits,
                &table.rate_limits,
                &edgesteer_ratelimit::Request {
                    client: ctx.client,
                    host: host_of(req),
                    path: req.uri.path(),
                    headers: &req.headers,
                },
                ctx.start,
            )
        };
        match outcome {
            Outcome::Allowed(q) => {
                ctx.limit = q;
                Ok(false)
            }
            Outcome::Limited(q) => {
                ctx.refusal = Some(Refusal::RateLimited);
                if let Some(c) = snap.rate_limited.get(q.policy).and_then(|t| t.get(q.tier)) {
                    c.inc();
                }
                // The quota indexes this snapshot's policies; the fallbacks
                // only keep a refusal a refusal if that were ever not so.
                let p = table.rate_limits.get(q.policy);
                let name = p.map_or("", |p| p.name.as_str());
                let tier = p.and_then(|p| p.tiers.get(q.tier));
                let (tier, rate, burst) =
                    tier.map_or(("default", 0, 0), |t| (t.name.as_str(), t.rate, t.burst));
                let policy_header = snap
                    .limits
                    .policy_header(q.policy, q.tier)
                    .cloned()
                    .unwrap_or(http::HeaderValue::from_static("\"unknown\""));
                let retry = edgesteer_ratelimit::retry_after_secs(&q.verdict);
                let body = serde_json::json!({
                    "error": "rate_limited",
                    "policy": name,
                    "tier": tier,
                    "rate_per_s": rate,
                    "burst": burst,
                    "retry_after_s": retry,
                    "message": format!("over the {tier} limit of {rate} requests/s (burst {burst}) of rate-limit policy {name}; retry after {retry} s"),
                });
                respond_json(
                    session,
                    429,
                    body,
                    [
                        ("retry-after", http::HeaderValue::from(retry)),
                        ("ratelimit-policy", policy_header),
                        (
                            "ratelimit",
                            edgesteer_ratelimit::ratelimit_header(name, rate, &q.verdict),
                        ),
                    ],
                )
                .await?;
                Ok(true)
            }
            Outcome::Blocked { retry_after_s } => {
                ctx.refusal = Some(Refusal::AbuseBlocked);
                self.steer.metrics.blocked();
                let body = serde_json::json!({
                    "error": "blocked",
                    "retry_after_s": retry_after_s,
                    "message": format!("this client address is blocked for sending far above its rate limit; retry after {retry_after_s} s"),
                });
                respond_json(
                    session,
                    429,
                    body,
                    [("retry-after", http::HeaderValue::from(retry_after_s))],
                )
                .await?;
                Ok(true)
            }
            Outcome::StoreUnavailable { policy } => {
                ctx.refusal = Some(Refusal::LimitStoreDown);
                let name = table
                    .rate_limits
                    .get(policy)
                    .map_or("", |p| p.name.as_str());
                if let Some(c) = snap.store_refusals.get(policy) {
                    c.inc();
                }
                let body = serde_json::json!({
                    "error": "rate_limit_store_unavailable",
                    "policy": name,
                    "retry_after_s": 1,
                    "message": format!("rate-limit policy {name} is fleet-wide and fails closed, and its store (Redis) is unreachable from this proxy; retry shortly"),
                });
                respond_json(
                    session,
                    503,
                    body,
                    [("retry-after", http::HeaderValue::from(1u32))],
                )
                .await?;
                Ok(true)
            }
        }
    }

    /// Marks the request as failed closed in `zone` and counts it; returns the zone's name.
    fn zone_exhausted<'a>(
        &self,
        ctx: &mut Ctx,
        snap: &'a Snapshot,
        zone: Option<edgesteer_config::ZoneId>,
    ) -> &'a str {
        ctx.refusal = Some(Refusal::ZoneExhausted);
        let name = zone.map_or("none", |z| snap.table.zone(z).name.as_str());
        self.steer
            .metrics
            .zone_blocked
            .with_label_values(&[name])
            .inc();
        name
    }

    /// Feeds an attempt's outcome to passive outlier detection.
    fn passive(&self, ctx: &Ctx, outcome: Outcome) {
        if let (Some(snap), Some(route), Some(addr)) = (&ctx.snap, ctx.route, ctx.peer_addr) {
            snap.health.report(
                route.backend,
                addr,
                outcome,
                &snap.table.outlier,
                route.region,
            );
        }
    }

    fn attempts_left(&self, ctx: &Ctx) -> bool {
        let max = ctx
            .snap
            .as_ref()
            .map_or(1, |s| s.table.retry.max_attempts as usize);
        ctx.tried_len < max.min(MAX_TRIED)
    }
}

/// The `Host` of a request: `:authority` for HTTP/2, else the header.
fn host_of(req: &pingora_http::RequestHeader) -> Option<&str> {
    req.uri.authority().map(|a| a.as_str()).or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// Hash of the request's sticky key: the first configured source present,
/// else the client address.
fn sticky_of(snap: &Snapshot, headers: &HeaderMap, client: IpAddr) -> u64 {
    let key = snap.table.release.sticky.iter().find_map(|source| {
        let value = match source {
            StickySource::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes()),
            StickySource::Cookie(name) => cookie(headers, name),
        };
        value.filter(|v| !v.is_empty())
    });
    sticky_for(snap, key, client)
}

/// The sticky hash of a key, or of the client address when there is none.
/// Shared with `/v1/explain` so both agree.
pub fn sticky_for(snap: &Snapshot, key: Option<&[u8]>, client: IpAddr) -> u64 {
    let salt = snap.table.release.salt.as_bytes();
    match (key, client) {
        (Some(k), _) => sticky_hash(salt, k),
        (None, IpAddr::V4(v4)) => sticky_hash(salt, &v4.octets()),
        (None, IpAddr::V6(v6)) => sticky_hash(salt, &v6.octets()),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
}

/// One access-log line (JSON, newline-terminated).
/// One access-log record. Fields borrow from the request and the snapshot,
/// and serialise straight into the output line: one allocation per line.
#[derive(serde::Serialize)]
struct AccessRecord<'a> {
    #[serde(serialize_with = "display")]
    ts: humantime::Rfc3339Timestamp,
    #[serde(serialize_with = "display")]
    client: IpAddr,
    country: Option<&'a str>,
    zone: Option<&'a str>,
    region: Option<&'a str>,
    #[serde(serialize_with = "display_opt")]
    backend: Option<SocketAddr>,
    track: Option<&'a str>,
    status: u16,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    bytes_sent: usize,
    attempts: usize,
    version: u64,
    reason: &'a str,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// One access-log line (JSON, newline-terminated).
fn access_line(session: &Session, ctx: &Ctx, snap: &Snapshot, status: u16) -> String {
    let t = &snap.table;
    let req = session.req_header();
    let served = ctx.route.filter(|_| ctx.route_used);
    let reason = match (ctx.refusal, served) {
        (Some(Refusal::PinOutsideZone), _) => "pin_refused",
        (Some(Refusal::ZoneExhausted), _) => "blocked",
        (Some(Refusal::RateLimited), _) => "rate_limited",
        (Some(Refusal::AbuseBlocked), _) => "abuse_blocked",
        (Some(Refusal::LimitStoreDown), _) => "ratelimit_store_down",
        (None, Some(r)) => r.reason.as_str(),
        (None, None) => "error",
    };
    let record = AccessRecord {
        ts: humantime::format_rfc3339_millis(std::time::SystemTime::now()),
        client: ctx.client,
        country: ctx.geo.country.map(|c| c.as_str()),
        zone: ctx
            .class
            .and_then(|c| c.zone)
            .map(|z| t.zone(z).name.as_str()),
        region: served.map(|r| t.region(r.region).name.as_str()),
        backend: served.and(ctx.peer_addr),
        track: served.map(|r| r.track.as_str()),
        status,
        method: req.method.as_str(),
        host: host_of(req),
        path: req.uri.path(),
        duration_ms: ctx.start.elapsed().as_secs_f64() * 1000.0,
        upstream_ms: ctx
            .upstream_start
            .map(|u| u.elapsed().as_secs_f64() * 1000.0),
        bytes_sent: session.as_downstream().body_bytes_sent(),
        attempts: ctx.tried_len,
        version: snap.version,
        reason,
    };
    let mut line = Vec::with_capacity(384);
    if serde_json::to_writer(&mut line, &record).is_err() {
        return String::new();
    }
    line.push(b'\n');
    String::from_utf8(line).unwrap_or_default()
}

fn zone_body(zone: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "error": "no_healthy_region",
            "zone": zone,
            "message": format!("no healthy backend is available in the regions allowed for this client (zone {zone}); the request was not sent outside the zone"),
        })
        .to_string(),
    )
}

async fn respond_json<const N: usize>(
    session: &mut Session,
    status: u16,
    body: serde_json::Value,
    headers: [(&'static str, http::HeaderValue); N],
) -> Result<()> {
    let body = Bytes::from(body.to_string());
    let mut resp = ResponseHeader::build(status, Some(4 + N))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "private, no-store")?;
    for (name, value) in headers {
        resp.insert_header(name, value)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    zone: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", content_type.to_string())?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "private, no-store")?;
    resp.insert_header("x-steer-zone", zone.to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}
