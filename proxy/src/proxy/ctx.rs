//! The per-request context: the snapshot the request was started on, who
//! the client is, what was decided, and what each phase left for the next.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use edgesteer_config::route::Route;
use edgesteer_config::{BackendId, ClientClass, RegionId};
use edgesteer_geo::{GeoResult, LookupStatus};

use super::refusal::RefusalKind;
use crate::steer::Snapshot;

/// Most upstream attempts one request can make (the table caps it lower).
pub(super) const MAX_TRIED: usize = 10;

/// Where the request stands with its route.
#[derive(Clone, Copy, Debug, Default)]
pub(super) enum RouteState {
    /// Not decided (refused before deciding, or still admitting).
    #[default]
    None,
    /// Decided in `request_filter`, not yet handed to an upstream.
    Decided(Route),
    /// Handed to an upstream; a retry must decide again.
    Sent(Route),
}

impl RouteState {
    /// The route decided or sent, for response headers.
    pub(super) fn route(self) -> Option<Route> {
        match self {
            RouteState::None => None,
            RouteState::Decided(r) | RouteState::Sent(r) => Some(r),
        }
    }

    /// The route an upstream was actually asked to serve.
    pub(super) fn sent(self) -> Option<Route> {
        match self {
            RouteState::Sent(r) => Some(r),
            _ => None,
        }
    }
}

/// Per-request state. The snapshot is loaded once, when the context is
/// made, so every phase (and every retry) reads the same table version.
pub struct Ctx {
    pub(super) snap: Arc<Snapshot>,
    pub(super) client: IpAddr,
    pub(super) geo: GeoResult,
    pub(super) class: Option<ClientClass>,
    pub(super) pin: Option<RegionId>,
    pub(super) sticky: u64,
    tried: [BackendId; MAX_TRIED],
    tried_len: usize,
    /// Endpoints whose attempt failed: a retry avoids them, so a DNS
    /// backend's other address is tried before another backend. Empty
    /// (no allocation) for a request whose first attempt holds; inline it
    /// was 320 of the context's 608 bytes, carried and moved by every
    /// request's future (BENCHMARKS.md, session 6).
    avoid: Vec<SocketAddr>,
    pub(super) route: RouteState,
    pub(super) refusal: Option<RefusalKind>,
    /// The rate-limit quota to advertise on the response.
    pub(super) limit: Option<edgesteer_ratelimit::Quota>,
    pub(super) tls: bool,
    pub(super) start: Instant,
    pub(super) upstream_start: Option<Instant>,
    /// The upstream's time to the response head, once it came.
    pub(super) upstream_head: Option<std::time::Duration>,
    /// The endpoint of the current attempt, for passive health reports.
    pub(super) peer_addr: Option<SocketAddr>,
    /// An upstream connection is held (counted in the active gauge).
    pub(super) upstream_held: bool,
    /// Counted in the downstream active gauge.
    pub(super) active: bool,
    /// Retries taken from the proxy-wide retry budget, given back at the end.
    pub(super) retries_held: i64,
    /// The request failed while its body was still arriving: the client's
    /// doing, so neither passive health nor the rollout gates count it.
    pub(super) client_fault: bool,
    /// This attempt's connect timeout was cut short by the request's own
    /// deadline: a connect that times out then is not the backend's fault.
    pub(super) connect_clipped: bool,
}

impl Ctx {
    pub(super) fn new(snap: Arc<Snapshot>) -> Ctx {
        Ctx {
            snap,
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
            avoid: Vec::new(),
            route: RouteState::None,
            refusal: None,
            limit: None,
            tls: false,
            start: Instant::now(),
            upstream_start: None,
            upstream_head: None,
            peer_addr: None,
            upstream_held: false,
            active: false,
            retries_held: 0,
            client_fault: false,
            connect_clipped: false,
        }
    }

    /// The backends already tried by this request, in order.
    pub(super) fn tried(&self) -> &[BackendId] {
        self.tried.get(..self.tried_len).unwrap_or(&[])
    }

    /// The endpoints that failed this request, in order.
    pub(super) fn avoided(&self) -> &[SocketAddr] {
        &self.avoid
    }

    /// Records that the attempt on `addr` failed (at most `MAX_TRIED`).
    pub(super) fn avoid(&mut self, addr: SocketAddr) {
        if self.avoid.len() < MAX_TRIED {
            self.avoid.push(addr);
        }
    }

    /// Upstream attempts made so far.
    pub(super) fn attempts(&self) -> usize {
        self.tried_len
    }

    /// Records that `route` is being handed to an upstream.
    pub(super) fn send(&mut self, route: Route) {
        self.route = RouteState::Sent(route);
        if let Some(slot) = self.tried.get_mut(self.tried_len) {
            *slot = route.backend;
            self.tried_len += 1;
        }
    }

    /// Whether the retry budget allows another attempt.
    pub(super) fn attempts_left(&self) -> bool {
        let max = self.snap.table.retry.max_attempts as usize;
        self.tried_len < max.min(MAX_TRIED)
    }
}

/// The `Host` of a request: `:authority` for HTTP/2, else the header,
/// else (HTTP/1.0, which may omit it) an absolute-form target's authority,
/// which Pingora keeps out of the URI but sends upstream as `Host`.
pub(super) fn host_of(req: &pingora_http::RequestHeader) -> Option<&str> {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .or_else(|| {
            pingora_http::authority::raw_target_authority(req.raw_path())
                .authority()
                .and_then(|a| std::str::from_utf8(a).ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request's future carries its context (more than once: Pingora
    /// keeps it across the phases' awaits), so it is built and moved whole
    /// per request. 608 bytes with the failed endpoints inline, 304 with
    /// them in a vector that only a failed attempt fills; a field that grows
    /// it past the bound fails here.
    #[test]
    fn the_context_stays_small() {
        const MAX: usize = 384;
        let size = std::mem::size_of::<Ctx>();
        assert!(size <= MAX, "Ctx is {size} bytes (at most {MAX})");
    }

    /// A request remembers every endpoint that failed it, up to the
    /// attempt limit, in order.
    #[test]
    fn failed_endpoints_are_remembered_in_order_up_to_the_limit() {
        let mut ctx = Ctx::new(crate::steer::covergen_for_tests().current());
        assert!(ctx.avoided().is_empty());
        let addrs: Vec<SocketAddr> = (0..MAX_TRIED as u16 + 2)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], 1000 + p)))
            .collect();
        for a in &addrs {
            ctx.avoid(*a);
        }
        assert_eq!(ctx.avoided(), &addrs[..MAX_TRIED]);
    }
}
