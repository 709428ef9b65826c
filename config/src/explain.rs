//! "Where would this client go right now, and why?": the routing half of
//! an explanation, traced against a table and a health view with the same
//! functions the data plane calls. The proxy's admin `/v1/explain` (its own
//! health, plus its rate limiters) and the config service's console
//! explain (the fleet's reported health) both build on it.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::route::{
    assigned_track, bucket, candidates, decide, region_available, Decision, HealthView, Request,
};
use crate::sticky::sticky_for;
use crate::{BackendId, Continent, Country, RegionId, RoutingTable, ZoneId};

/// The client of a hypothetical request, as the proxy would see it.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    /// Client address (as the proxy would resolve it).
    pub ip: IpAddr,
    /// The geo lookup's answer for `ip`.
    pub country: Option<Country>,
    pub continent: Option<Continent>,
    /// How the lookup went (`found`, `private`, ...).
    pub lookup: &'a str,
    /// `Host` header, for pins.
    pub host: Option<&'a str>,
    /// Sticky key (e.g. the `X-Api-Key` value); the client IP otherwise.
    pub key: Option<&'a str>,
}

/// A health view that can also say a backend's own round-trip time.
pub trait BackendRtt: HealthView {
    fn backend_rtt_us(&self, backend: BackendId) -> Option<u32>;
}

/// The explanation: `table_version`, `client`, `pin`, `sticky`,
/// `candidates` (in order, with backends and the client's track) and the
/// `decision` `decide` takes now.
pub fn explain_route(
    t: &RoutingTable,
    version: u64,
    c: &Client<'_>,
    health: &impl BackendRtt,
) -> Map<String, Value> {
    let class = t.classify(c.country, c.continent);
    let pin = c.host.and_then(|h| t.pin_for_host(h));
    let sticky = sticky_for(t, c.key.map(str::as_bytes), c.ip);
    let req = Request {
        class,
        pin,
        sticky,
        tried: &[],
    };
    let name = |r: RegionId| t.region(r).name.clone();
    let zone_name = |z: Option<ZoneId>| z.map(|z| t.zone(z).name.clone());
    let mut out = Map::new();
    out.insert("table_version".into(), json!(version));
    out.insert(
        "client".into(),
        json!({
            "ip": c.ip.to_string(),
            "country": c.country.map(|c| c.as_str()),
            "continent": c.continent.map(|c| c.code()),
            "lookup": c.lookup,
            "zone": zone_name(class.zone),
            "allowed": class.allowed.iter().map(name).collect::<Vec<_>>(),
            "home": name(class.home),
            "home_via": format!("{:?}", class.home_via).to_lowercase(),
        }),
    );
    out.insert("pin".into(), json!(pin.map(name)));
    out.insert(
        "sticky".into(),
        json!({ "key": if c.key.is_some() { "key" } else { "client_ip" }, "bucket": bucket(sticky) }),
    );
    out.insert(
        "candidates".into(),
        Value::Array(candidate_list(t, &req, health)),
    );
    out.insert("decision".into(), decision(t, &req, health));
    out
}

/// The regions the request may go to, in order, with their backends and
/// the track this client gets in each.
fn candidate_list(t: &RoutingTable, req: &Request<'_>, health: &impl BackendRtt) -> Vec<Value> {
    let zone_name = |z: Option<ZoneId>| z.map(|z| t.zone(z).name.clone());
    let ms = |us: Option<u32>| us.map(|u| f64::from(u) / 1000.0);
    match candidates(t, req, health) {
        Ok(c) => c
            .map(|(region, reason)| {
                let r = t.region(region);
                let backends: Vec<Value> = r
                    .backends
                    .iter()
                    .map(|&b| {
                        json!({
                            "backend": t.backend(b).key,
                            "track": t.backend(b).track.as_str(),
                            "weight": t.backend(b).weight,
                            "available": health.is_healthy(b),
                            "rtt_ms": ms(health.backend_rtt_us(b)),
                        })
                    })
                    .collect();
                json!({
                    "region": r.name,
                    "as": reason.as_str(),
                    "zone": zone_name(r.zone),
                    "drained": r.drained,
                    "available": region_available(t, region, health),
                    "rtt_ms": ms(health.region_rtt_us(region)),
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
