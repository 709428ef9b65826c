//! The impact preview's computation, pure: for every observed (country,
//! pin) cell, where the pure `decide()` sends it under the current table
//! and under the proposed one, with the same health view; summed into
//! moves between regions, the countries that change region, each region's
//! rate and canary rate before and after against its observed peak, and
//! the traffic that crosses a zone (none, by construction; shown anyway).
//!
//! The routing region does not depend on the sticky hash (a region either
//! is available or is skipped whole), so one `decide()` per cell is exact;
//! the canary rate is the region's share of its rate.

use std::collections::BTreeMap;

use edgesteer_config::model::BUCKETS;
use edgesteer_config::route::{decide, Decision, HealthView, Reason, Request};
use edgesteer_config::{ClientClass, RegionId, RoutingTable, Track};
use edgesteer_control_api::preview::{CountryMove, Move, Preview, RegionImpact, Unmodeled};

use crate::traffic::{Observed, Place};

/// Where a region's projected rate warns: this much over its observed peak.
pub const CAPACITY_FACTOR: f64 = 1.25;
/// Where a region's projected rate warns: this share of its `capacity`.
pub const CAPACITY_SHARE: f64 = 0.8;
/// The name a refused request (421, 503) lands on.
pub const REFUSED: &str = "refused";

/// One table's side of a preview.
pub struct Side<'a> {
    pub table: &'a RoutingTable,
    pub health: &'a dyn HealthView,
}

/// Where one cell lands under one table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Landing {
    Region {
        region: RegionId,
        reason: Reason,
        class: ClientClass,
    },
    Refused,
}

fn land(side: &Side<'_>, place: &Place, pin: Option<&str>) -> Landing {
    let t = side.table;
    let class = match place {
        Place::Country(c) => t.classify(Some(*c), None),
        _ => t.classify(None, None),
    };
    let req = Request {
        class,
        pin: pin.and_then(|h| t.pin_for_host(h)),
        sticky: 0,
        tried: &[],
    };
    match decide(t, &req, side.health) {
        Decision::Route(r) => Landing::Region {
            region: r.region,
            reason: r.reason,
            class,
        },
        Decision::PinOutsideZone { .. } | Decision::NoHealthyBackend { .. } => Landing::Refused,
    }
}

fn name(t: &RoutingTable, l: Landing) -> &str {
    match l {
        Landing::Region { region, .. } => &t.region(region).name,
        Landing::Refused => REFUSED,
    }
}

/// Whether a landing serves a client outside its zone.
fn crosses(t: &RoutingTable, l: Landing) -> bool {
    let Landing::Region { region, class, .. } = l else {
        return false;
    };
    let served = t.region(region).zone;
    match class.zone {
        Some(z) => served != Some(z),
        None => served.is_some_and(|z| t.zone(z).isolated),
    }
}

/// The share of a region's requests its canary track gets: its share
/// when both tracks can serve, all or nothing when only one can.
fn canary_share(side: &Side<'_>, region: RegionId) -> f64 {
    let r = side.table.region(region);
    let up = |t: Track| {
        r.tracks[t.index()]
            .members()
            .any(|b| side.health.is_healthy(b))
    };
    match (up(Track::Stable), up(Track::Canary)) {
        (_, false) => 0.0,
        (false, true) => 1.0,
        (true, true) => f64::from(r.canary_bps) / f64::from(BUCKETS),
    }
}

/// Unmodeled traffic, summed by what it is.
#[derive(Default)]
struct Unknowns(BTreeMap<(String, String), f64>);

impl Unknowns {
    fn add(&mut self, what: &str, why: &str, rps: f64) {
        *self.0.entry((what.into(), why.into())).or_default() += rps;
    }
}

/// The preview of `after` against `before` over `observed`; `peaks` is
/// each region's highest observed requests/s in the window.
pub fn impact(
    before: &Side<'_>,
    after: &Side<'_>,
    observed: &Observed,
    peaks: &BTreeMap<String, f64>,
) -> Preview {
    let mut regions: BTreeMap<String, RegionImpact> = BTreeMap::new();
    for side in [before, after] {
        for r in &side.table.regions {
            regions.entry(r.name.clone()).or_default();
        }
    }
    let mut moves: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut countries = Vec::new();
    let mut unknown = Unknowns::default();
    let (mut total, mut crossings) = (0.0, 0.0);
    for cell in &observed.cells {
        if cell.place == Place::Other {
            unknown.add(
                "countries past the proxies' top 64",
                "summed by the proxies, so their home regions are not known",
                cell.rps,
            );
            continue;
        }
        if cell.pin.as_deref() == Some(edgesteer_control_api::report::OTHER_PIN) {
            unknown.add(
                "host pins past the first 256 a proxy counts (1,024 the service keeps)",
                "counted together, so their regions are not known",
                cell.rps,
            );
            continue;
        }
        total += cell.rps;
        let pin = cell.pin.as_deref();
        let (a, b) = (
            land(before, &cell.place, pin),
            land(after, &cell.place, pin),
        );
        for (side, l, is_after) in [(before, a, false), (after, b, true)] {
            if let Landing::Region { region, .. } = l {
                let r = regions
                    .entry(side.table.region(region).name.clone())
                    .or_default();
                let canary = cell.rps * canary_share(side, region);
                if is_after {
                    r.after_rps += cell.rps;
                    r.canary_rps_after += canary;
                } else {
                    r.before_rps += cell.rps;
                    r.canary_rps_before += canary;
                }
            }
        }
        let by_rtt = |l: Landing| matches!(l, Landing::Region { reason, .. } if reason == Reason::LatencyFallback);
        if by_rtt(a) || by_rtt(b) {
            unknown.add(
                "latency fallback",
                "the service has no RTT data: the region shown is the first allowed one in table order, each proxy chooses by its own RTT",
                cell.rps,
            );
        }
        if crosses(after.table, b) {
            crossings += cell.rps;
        }
        let (from, to) = (name(before.table, a), name(after.table, b));
        if from != to {
            *moves.entry((from.to_string(), to.to_string())).or_default() += cell.rps;
            countries.push(CountryMove {
                country: cell.place.as_str().to_string(),
                pin: cell.pin.clone(),
                from: from.to_string(),
                to: to.to_string(),
                rps: cell.rps,
            });
        }
    }
    for (pin, region) in after.table.pins() {
        if before.table.pin_for_host(pin).is_none() {
            unknown.add(
                &format!("new pin {pin} -> {}", after.table.region(region).name),
                "requests for hosts without a pin are not counted by host, so what this pin would take is not known",
                0.0,
            );
        }
    }
    for (name, r) in regions.iter_mut() {
        if let Some(id) = before.table.region_by_name(name) {
            r.canary_bps_before = before.table.region(id).canary_bps;
        }
        if let Some(id) = after.table.region_by_name(name) {
            r.canary_bps_after = after.table.region(id).canary_bps;
        }
        r.peak_rps = peaks.get(name).copied().unwrap_or(0.0);
        r.capacity = [after.table, before.table]
            .iter()
            .find_map(|t| t.region_by_name(name).map(|id| t.region(id).capacity))
            .flatten();
        let (warning, bounds) = capacity_warning(r);
        r.capacity_warning = warning;
        r.capacity_bounds = bounds;
    }
    let share = |rps: f64| if total > 0.0 { rps / total } else { 0.0 };
    let mut moves: Vec<Move> = moves
        .into_iter()
        .map(|((from, to), rps)| Move {
            share: share(rps),
            from,
            to,
            rps,
        })
        .collect();
    moves.sort_by(|a, b| b.rps.total_cmp(&a.rps));
    countries.sort_by(|a, b| b.rps.total_cmp(&a.rps));
    Preview {
        requests_seen: observed.requests,
        proxies: observed.proxies,
        total_rps: total,
        moves,
        countries,
        regions,
        zone_crossings: crossings,
        unmodeled: unknown
            .0
            .into_iter()
            .map(|((what, why), rps)| Unmodeled { what, rps, why })
            .collect(),
        ..Preview::default()
    }
}

/// A warning, and the bounds crossed (`capacity`, `peak`), when a region
/// would take more than [`CAPACITY_SHARE`] of its `capacity` (whether or
/// not the change adds to it), or more than it takes now and more than
/// [`CAPACITY_FACTOR`] times its observed peak.
fn capacity_warning(r: &RegionImpact) -> (Option<String>, Vec<String>) {
    let mut why = Vec::new();
    let mut bounds = Vec::new();
    if let Some(cap) = r.capacity.filter(|c| r.after_rps > c * CAPACITY_SHARE) {
        bounds.push("capacity".to_string());
        why.push(format!(
            "would take {:.1} requests/s, {:.0}% of its capacity of {cap:.1} (warns above {:.0}%)",
            r.after_rps,
            100.0 * r.after_rps / cap,
            100.0 * CAPACITY_SHARE
        ));
    }
    if r.after_rps > r.before_rps + 1e-9 && r.after_rps >= 0.5 {
        if r.peak_rps <= 0.0 {
            bounds.push("peak".to_string());
            why.push(format!(
                "would take {:.1} requests/s; it served none in the window",
                r.after_rps
            ));
        } else if r.after_rps > r.peak_rps * CAPACITY_FACTOR {
            bounds.push("peak".to_string());
            why.push(format!(
                "would take {:.1} requests/s, {:.0}% of its observed peak of {:.1} (warns above {:.0}%)",
                r.after_rps,
                100.0 * r.after_rps / r.peak_rps,
                r.peak_rps,
                100.0 * CAPACITY_FACTOR
            ));
        }
    }
    ((!why.is_empty()).then(|| why.join("; ")), bounds)
}
