//! "What would DNS answer this client for this name, and does HTTP
//! agree?": the DNS half of an explanation (the proxy's admin
//! `/v1/explain?dns=NAME` and `ctl explain --dns`).

use serde_json::{json, Value};

use super::answer::{answer, DnsDecision};
use super::NameKind;
use crate::model::{ClientClass, RegionSet, RoutingTable};
use crate::route::{decide, Decision, HealthView, Request};

/// The DNS answer for `name` and the HTTP decision for the same client
/// and host, side by side, with whether they name the same region (or
/// both fail closed inside the zone).
pub fn explain_dns<H: HealthView + ?Sized>(
    t: &RoutingTable,
    name: &str,
    class: ClientClass,
    health: &H,
    edges_down: RegionSet,
) -> Value {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let Some(zone) = t.dns.as_deref() else {
        return json!({ "name": name, "answer": "refused", "why": "the table has no [dns] section" });
    };
    if !zone.contains(&name) {
        return json!({ "name": name, "answer": "refused", "why": format!("not in the zone {}", zone.apex) });
    }
    let Some(kind) = zone.steered(&name) else {
        return json!({ "name": name, "answer": "static", "why": "not a steered name: static records, the apex, or NXDOMAIN" });
    };
    let pin = match kind {
        NameKind::Geo => None,
        NameKind::Pin(r) => Some(r),
    };
    let region_name = |r: crate::RegionId| t.region(r).name.clone();
    let http = decide(
        t,
        &Request {
            class,
            pin,
            sticky: 0,
            tried: &[],
        },
        health,
    );
    let http_region = match http {
        Decision::Route(r) => Some(r.region),
        _ => None,
    };
    match answer(t, zone, class, pin, health, edges_down) {
        DnsDecision::Answer(a) => {
            let edges = &zone.regions[a.region.index()];
            let addrs: Vec<String> = edges
                .v4
                .iter()
                .map(ToString::to_string)
                .chain(edges.v6.iter().map(ToString::to_string))
                .collect();
            let agrees = match http {
                Decision::Route(r) => r.region == a.region,
                Decision::NoHealthyBackend { .. } => {
                    a.state == super::answer::AnswerState::FailOpen
                }
                Decision::PinOutsideZone { .. } => false,
            };
            json!({
                "name": name,
                "answer": "addresses",
                "region": region_name(a.region),
                "reason": a.reason.as_str(),
                "state": a.state.as_str(),
                "ttl": a.ttl,
                "addresses": addrs,
                "http_region": http_region.map(region_name),
                "agrees_with_http": agrees,
            })
        }
        DnsDecision::PinOutsideZone { pinned, .. } => json!({
            "name": name,
            "answer": "nodata",
            "why": format!("pinned to {} outside the client's zone (HTTP: 421)", region_name(pinned)),
            "http_region": http_region.map(region_name),
            "agrees_with_http": matches!(http, Decision::PinOutsideZone { .. }),
        }),
        DnsDecision::NoRegion => {
            json!({ "name": name, "answer": "nodata", "why": "no region allowed", "agrees_with_http": http_region.is_none() })
        }
    }
}
