//! "Where would this client go right now, and why?" — the decision for a
//! hypothetical request, traced against the live table and health state
//! with the same functions the data plane calls.

use std::net::IpAddr;

use edgesteer_config::route::HealthView;
use edgesteer_config::route::{
    assigned_track, bucket, candidates, decide, region_available, Decision, Request,
};
use edgesteer_config::{RegionId, RoutingTable, ZoneId};
use edgesteer_geo::{GeoDb, GeoLookup};
use serde_json::{json, Value};

use crate::steer::Snapshot;
use crate::sticky::sticky_for;

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
}

pub fn explain(
    snap: &Snapshot,
    geo: &GeoDb,
    limiter: &edgesteer_ratelimit::Limiter,
    q: &Query,
) -> Value {
    let t: &RoutingTable = &snap.table;
    let g = geo.lookup(q.ip);
    let class = t.classify(g.country, g.continent);
    let pin = q.host.as_deref().and_then(|h| t.pin_for_host(h));
    let sticky = sticky_for(&snap.table, q.key.as_deref().map(str::as_bytes), q.ip);
    let req = Request {
        class,
        pin,
        sticky,
        tried: &[],
    };
    let name = |r: RegionId| t.region(r).name.clone();
    let zone_name = |z: Option<ZoneId>| z.map(|z| t.zone(z).name.clone());
    let candidate_list = candidate_list(snap, &req);
    let decision = decision(t, &req, &snap.health);
    json!({
        "table_version": snap.version,
        "client": {
            "ip": q.ip.to_string(),
            "country": g.country.map(|c| c.as_str()),
            "continent": g.continent.map(|c| c.code()),
            "lookup": g.status.as_str(),
            "zone": zone_name(class.zone),
            "allowed": class.allowed.iter().map(name).collect::<Vec<_>>(),
            "home": name(class.home),
            "home_via": format!("{:?}", class.home_via).to_lowercase(),
        },
        "pin": pin.map(name),
        "sticky": { "key": if q.key.is_some() { "key" } else { "client_ip" }, "bucket": bucket(sticky) },
        "candidates": candidate_list,
        "decision": decision,
        "rate_limit": rate_limits(snap, limiter, q),
    })
}

/// The regions the request may go to, in order, with their backends and
/// the track this client gets in each.
fn candidate_list(snap: &Snapshot, req: &Request<'_>) -> Vec<Value> {
    let t = &snap.table;
    let zone_name = |z: Option<ZoneId>| z.map(|z| t.zone(z).name.clone());
    match candidates(t, req, &snap.health) {
        Ok(c) => c
            .map(|(region, reason)| {
                let r = t.region(region);
                let backends: Vec<Value> = r
                    .backends
                    .iter()
                    .map(|&b| {
                        let state = snap.health.state(b);
                        json!({
                            "backend": t.backend(b).key,
                            "track": t.backend(b).track.as_str(),
                            "weight": t.backend(b).weight,
                            "available": state.is_some_and(|s| s.is_available()),
                            "rtt_ms": state.and_then(|s| s.rtt_us()).map(|u| f64::from(u) / 1000.0),
                        })
                    })
                    .collect();
                json!({
                    "region": r.name,
                    "as": reason.as_str(),
                    "zone": zone_name(r.zone),
                    "drained": r.drained,
                    "available": region_available(t, region, &snap.health),
                    "rtt_ms": HealthView::region_rtt_us(&snap.health, region).map(|u| f64::from(u) / 1000.0),
                    "track": assigned_track(t, region, req.sticky).as_str(),
                    "canary_bps": r.canary_bps,
                    "backends": backends,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What `decide` answers for the request right now.
fn decision(t: &RoutingTable, req: &Request<'_>, health: &impl HealthView) -> Value {
    let name = |r: RegionId| t.region(r).name.clone();
    let zone_name = |z: Option<ZoneId>| z.map(|z| t.zone(z).name.clone());
    match decide(t, req, health) {
        Decision::Route(r) => json!({
            "outcome": "route",
            "status": 200,
            "region": name(r.region),
            "backend": t.backend(r.backend).key,
            "track": r.track.as_str(),
            "track_fallback": r.track_fallback,
            "reason": r.reason.as_str(),
        }),
        Decision::PinOutsideZone { pinned, zone } => json!({
            "outcome": "refused",
            "status": 421,
            "reason": "pin_outside_zone",
            "pinned": name(pinned),
            "zone": zone_name(zone),
        }),
        Decision::NoHealthyBackend { zone } => json!({
            "outcome": "blocked",
            "status": 503,
            "reason": "no_healthy_region",
            "zone": zone_name(zone),
        }),
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
        "blocked": limiter.blocked(q.ip),
        "store": limiter.store_snapshot(),
        "policies": policies,
    })
}
