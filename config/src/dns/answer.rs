//! The DNS answer: which region's edges a steered name gets, for a client
//! class, under a health view. Pure, like [`decide`](crate::route::decide),
//! and built from the same parts: [`candidates`] (home or pin, failover
//! list, latency fallback, all inside the client's allowed set) and
//! [`region_available`] (not drained, at least half its backends healthy).
//! So for every client, the region DNS answers with is the region HTTP
//! routes to, or both fail closed inside the client's zone.

use super::DnsZone;
use crate::model::{ClientClass, RegionId, RegionSet, ZoneId};
use crate::route::{candidates, region_available, HealthView, Reason, Request};

/// How healthy the answer is; it chooses the TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnswerState {
    /// The home or pinned region, every backend healthy.
    Normal,
    /// A failover or latency-fallback region, or the first choice with
    /// some backends down: a short TTL brings clients back soon.
    Degraded,
    /// No region the client may use can serve: the zone's own edges,
    /// whose HTTP answer is the 503 naming the zone.
    FailOpen,
}

impl AnswerState {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerState::Normal => "normal",
            AnswerState::Degraded => "degraded",
            AnswerState::FailOpen => "fail_open",
        }
    }

    /// Index into per-state tables (0, 1, 2).
    pub fn index(self) -> usize {
        match self {
            AnswerState::Normal => 0,
            AnswerState::Degraded => 1,
            AnswerState::FailOpen => 2,
        }
    }
}

/// A steered name's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The region whose edges answer.
    pub region: RegionId,
    /// Why the region was chosen (as `decide()` would say).
    pub reason: Reason,
    pub state: AnswerState,
    pub ttl: u32,
}

/// The outcome of [`answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsDecision {
    Answer(DnsAnswer),
    /// A pinned name of a region outside the client's zone: NODATA (its
    /// HTTP answer is 421).
    PinOutsideZone {
        pinned: RegionId,
        zone: Option<ZoneId>,
    },
    /// The client may use no region at all (a table cannot compile to
    /// this; kept so the function is total): NODATA.
    NoRegion,
}

/// Answers a steered name for a client.
///
/// `edges_down` are regions whose edges fail their health URL: DNS skips
/// them as it skips unavailable regions (HTTP, already at an edge, does
/// not care). With every allowed region unavailable, the answer is the
/// first candidate's edges (the home's, or the pin's) with the fail-open
/// TTL: never an address outside the zone, never SERVFAIL.
pub fn answer<H: HealthView + ?Sized>(
    table: &crate::model::RoutingTable,
    zone: &DnsZone,
    class: ClientClass,
    pin: Option<RegionId>,
    health: &H,
    edges_down: RegionSet,
) -> DnsDecision {
    let req = Request {
        class,
        pin,
        sticky: 0,
        tried: &[],
    };
    let mut cands = match candidates(table, &req, health) {
        Ok(c) => c,
        Err(crate::route::Decision::PinOutsideZone { pinned, zone }) => {
            return DnsDecision::PinOutsideZone { pinned, zone }
        }
        Err(_) => return DnsDecision::NoRegion,
    };
    let mut first = None;
    for (region, reason) in cands.by_ref() {
        first.get_or_insert((region, reason));
        if region_available(table, region, health) && !edges_down.contains(region) {
            let first_choice = matches!(reason, Reason::Home | Reason::Pin);
            let state = if first_choice && fully_healthy(table, region, health) {
                AnswerState::Normal
            } else {
                AnswerState::Degraded
            };
            let ttl = match state {
                AnswerState::Normal => zone.ttl.normal,
                _ => zone.ttl.degraded,
            };
            return DnsDecision::Answer(DnsAnswer {
                region,
                reason,
                state,
                ttl,
            });
        }
    }
    match first {
        Some((region, reason)) => DnsDecision::Answer(DnsAnswer {
            region,
            reason,
            state: AnswerState::FailOpen,
            ttl: zone.ttl.fail_open,
        }),
        None => DnsDecision::NoRegion,
    }
}

/// Every backend of the region healthy.
fn fully_healthy<H: HealthView + ?Sized>(
    table: &crate::model::RoutingTable,
    region: RegionId,
    health: &H,
) -> bool {
    table
        .region(region)
        .tracks
        .iter()
        .flat_map(|t| t.members())
        .all(|b| health.is_healthy(b))
}
