//! The proxy's `/v1/explain`: the routing explanation of
//! `edgesteer_config::explain` against this proxy's live table and health,
//! plus which rate-limit policies would count the request.

use std::net::IpAddr;

use edgesteer_config::explain::{explain_route, BackendRtt, Client};
use edgesteer_config::route::HealthView;
use edgesteer_config::{BackendId, RegionId};
use edgesteer_geo::{GeoDb, GeoLookup};
use serde_json::{json, Value};

use crate::steer::Snapshot;

/// A hypothetical request.
#[derive(Debug, serde::Deserialize)]
pub struct Query {
    /// Client address (as the proxy would resolve it).
    pub ip: IpAddr,
    /// `Host` header, for pins.
    pub host: Option<String>,
    /// Sticky key (e.g. the `X-Api-Key` value); the client IP otherwise.
    /// Also the key header-keyed rate-limit policies would see.
    pub key: Option<String>,
    /// Request path, for rate-limit policies scoped by path (default `/`).
    pub path: Option<String>,
    /// A DNS name: also show what GeoDNS answers this client for it, and
    /// whether that agrees with the HTTP decision.
    pub dns: Option<String>,
}

pub fn explain(
    snap: &Snapshot,
    geo: &GeoDb,
    limiter: &edgesteer_ratelimit::Limiter,
    q: &Query,
) -> Value {
    // As the data plane sees it: an IPv4-mapped address is its IPv4 one
    // (for the sticky bucket and the block list too).
    let ip = edgesteer_config::model::canonical_ip(q.ip);
    let g = geo.lookup(ip);
    let client = Client {
        ip,
        country: g.country,
        continent: g.continent,
        lookup: g.status.as_str(),
        host: q.host.as_deref(),
        key: q.key.as_deref(),
    };
    let mut out = explain_route(
        &snap.table,
        snap.version,
        &client,
        &ProxyHealth(&snap.health),
    );
    out.insert("rate_limit".into(), rate_limits(snap, limiter, q));
    if let Some(name) = &q.dns {
        let class = snap.table.classify(g.country, g.continent);
        let dns = edgesteer_config::dns::explain::explain_dns(
            &snap.table,
            name,
            class,
            &snap.health,
            edgesteer_config::model::RegionSet::EMPTY,
        );
        out.insert("dns".into(), dns);
    }
    Value::Object(out)
}

/// This proxy's own health view, with each backend's measured RTT.
struct ProxyHealth<'a>(&'a edgesteer_health::TableHealth);

impl HealthView for ProxyHealth<'_> {
    fn is_healthy(&self, backend: BackendId) -> bool {
        self.0.is_healthy(backend)
    }
    fn region_rtt_us(&self, region: RegionId) -> Option<u32> {
        self.0.region_rtt_us(region)
    }
}

impl BackendRtt for ProxyHealth<'_> {
    fn backend_rtt_us(&self, backend: BackendId) -> Option<u32> {
        self.0.state(backend).and_then(|s| s.rtt_us())
    }
}

/// Which policies would count this request, under which tier and key, and
/// whether the address is blocked. Consumes no quota.
fn rate_limits(snap: &Snapshot, limiter: &edgesteer_ratelimit::Limiter, q: &Query) -> Value {
    use edgesteer_config::ratelimit::{LimitKey, LimitScope};
    let path = q.path.as_deref().unwrap_or("/");
    let policies: Vec<Value> = snap
        .table
        .rate_limits
        .iter()
        .map(|p| {
            let (counted_by, tier) = match (&p.key, q.key.as_deref()) {
                (LimitKey::ClientIp, _) => ("client_ip", p.default_tier),
                (LimitKey::Header(_), Some(k)) => match p.tier_of(k) {
                    Some(t) => ("key", t),
                    None => ("client_ip (unknown key)", p.default_tier),
                },
                (LimitKey::Header(_), None) => ("client_ip (no key)", p.default_tier),
            };
            let t = p.tiers.get(tier);
            json!({
                "policy": p.name,
                "applies": p.applies(q.host.as_deref(), path),
                "counted_by": counted_by,
                "tier": t.map(|t| t.name.as_str()),
                "rate_per_s": t.map(|t| t.rate),
                "burst": t.map(|t| t.burst),
                "scope": if p.scope == LimitScope::Global { "global" } else { "local" },
            })
        })
        .collect();
    json!({
        "blocked": limiter.blocked(edgesteer_config::model::canonical_ip(q.ip)),
        "store": limiter.store_snapshot(),
        "policies": policies,
    })
}
