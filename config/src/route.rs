//! The routing decision: a pure function of (table, client class, health,
//! sticky hash, already-tried backends). No sockets, no clocks, no
//! allocation; property-tested and benchmarked on its own.

use crate::model::{
    BackendId, ClientClass, RegionId, RegionSet, RoutingTable, Track, ZoneId, BUCKETS,
};

/// What the routing decision needs to know about backend health.
pub trait HealthView {
    /// Whether a backend may receive traffic (active and passive checks).
    fn is_healthy(&self, backend: BackendId) -> bool;
    /// Smoothed round-trip time to a region in microseconds, if measured.
    fn region_rtt_us(&self, region: RegionId) -> Option<u32>;
}

/// Every backend healthy, no RTT data. What a proxy sees before the first probe.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllHealthy;

impl HealthView for AllHealthy {
    fn is_healthy(&self, _: BackendId) -> bool {
        true
    }
    fn region_rtt_us(&self, _: RegionId) -> Option<u32> {
        None
    }
}

/// Why a region was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The client's geographic home region.
    Home,
    /// A host pin chose the region.
    Pin,
    /// The home (or pinned) region had nothing available; next in its failover list.
    Failover,
    /// Failover exhausted; lowest-RTT available region inside the allowed set.
    LatencyFallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Home => "home",
            Reason::Pin => "pin",
            Reason::Failover => "failover",
            Reason::LatencyFallback => "latency_fallback",
        }
    }
}

/// A routed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub region: RegionId,
    pub backend: BackendId,
    pub track: Track,
    pub reason: Reason,
    /// The assigned track had nothing available, so the other track served.
    pub track_fallback: bool,
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Route(Route),
    /// The host pin names a region outside the client's allowed set (421).
    PinOutsideZone {
        pinned: RegionId,
        zone: Option<ZoneId>,
    },
    /// No allowed region has an available backend (503, fail closed).
    NoHealthyBackend {
        zone: Option<ZoneId>,
    },
}

/// A request's routing inputs that stay fixed across its retries.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub class: ClientClass,
    pub pin: Option<RegionId>,
    /// Stable hash of the sticky key (see [`sticky_hash`]).
    pub sticky: u64,
    /// Backends already attempted by this request.
    pub tried: &'a [BackendId],
}

/// Chooses where a request goes.
///
/// Candidate order: the pinned or home region, then its failover list, then
/// the lowest-RTT region of the allowed set; every candidate is filtered by
/// `class.allowed`, so no health state can move a client out of its zone.
pub fn decide<H: HealthView + ?Sized>(
    table: &RoutingTable,
    req: &Request<'_>,
    health: &H,
) -> Decision {
    let candidates = match candidates(table, req, health) {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let bucket = bucket(req.sticky);
    for (region, reason) in candidates {
        if let Some(r) = pick_in_region(table, region, bucket, req, health, reason) {
            return Decision::Route(r);
        }
    }
    Decision::NoHealthyBackend {
        zone: req.class.zone,
    }
}

/// The regions `decide` tries for a request, in order, with the reason
/// each would be chosen for; or the refusal when the pin is out of zone.
/// Lazy and allocation-free: the latency phase is only computed if reached.
pub fn candidates<'a, H: HealthView + ?Sized>(
    table: &'a RoutingTable,
    req: &Request<'_>,
    health: &'a H,
) -> Result<Candidates<'a, H>, Decision> {
    let allowed = req.class.allowed;
    let (home, home_reason) = match req.pin {
        Some(p) if !allowed.contains(p) => {
            return Err(Decision::PinOutsideZone {
                pinned: p,
                zone: req.class.zone,
            })
        }
        Some(p) => (p, Reason::Pin),
        None => (req.class.home, Reason::Home),
    };
    Ok(Candidates {
        table,
        health,
        allowed,
        home,
        home_reason,
        phase: Phase::Home,
        visited: RegionSet::EMPTY,
    })
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Home,
    Failover(usize),
    Latency,
}

/// Iterator returned by [`candidates`].
pub struct Candidates<'a, H: ?Sized> {
    table: &'a RoutingTable,
    health: &'a H,
    allowed: RegionSet,
    home: RegionId,
    home_reason: Reason,
    phase: Phase,
    visited: RegionSet,
}

impl<H: HealthView + ?Sized> Iterator for Candidates<'_, H> {
    type Item = (RegionId, Reason);

    fn next(&mut self) -> Option<(RegionId, Reason)> {
        loop {
            match self.phase {
                Phase::Home => {
                    self.phase = Phase::Failover(0);
                    if self.allowed.contains(self.home) {
                        self.visited.insert(self.home);
                        return Some((self.home, self.home_reason));
                    }
                }
                Phase::Failover(i) => match self.table.region(self.home).failover.get(i) {
                    Some(&f) => {
                        self.phase = Phase::Failover(i + 1);
                        if self.allowed.contains(f) && !self.visited.contains(f) {
                            self.visited.insert(f);
                            return Some((f, Reason::Failover));
                        }
                    }
                    None => self.phase = Phase::Latency,
                },
                Phase::Latency => {
                    // The allowed regions not yet offered, best RTT first
                    // (unknown RTT sorts last, ties by region order).
                    let remaining = RegionSet(self.allowed.0 & !self.visited.0);
                    let best = remaining
                        .iter()
                        .min_by_key(|&r| (self.health.region_rtt_us(r).unwrap_or(u32::MAX), r.0))?;
                    self.visited.insert(best);
                    return Some((best, Reason::LatencyFallback));
                }
            }
        }
    }
}

/// The track a request is assigned in `region` (before any track fallback).
pub fn assigned_track(table: &RoutingTable, region: RegionId, sticky: u64) -> Track {
    if bucket(sticky) < table.region(region).canary_bps {
        Track::Canary
    } else {
        Track::Stable
    }
}

/// Whether a region may take traffic now: not drained, and at least half
/// of its backends (both tracks, weight > 0) healthy, and at least one.
///
/// This is the one availability rule of both planes: `decide()` skips a
/// region that fails it (its clients go down the failover list), and the
/// DNS answer does the same, so HTTP and DNS never disagree on which
/// region serves. A region below half its capacity would otherwise take
/// its whole share of traffic on what is left of it.
pub fn region_available<H: HealthView + ?Sized>(
    table: &RoutingTable,
    region: RegionId,
    health: &H,
) -> bool {
    let r = table.region(region);
    if r.drained {
        return false;
    }
    let total = r.tracks[0].len() + r.tracks[1].len();
    // ceil(total / 2), and at least one: 1 of 1, 1 of 2, 2 of 3, 2 of 4.
    let need = total.div_ceil(2).max(1);
    let mut healthy = 0;
    for b in r.tracks.iter().flat_map(|t| t.members()) {
        if health.is_healthy(b) {
            healthy += 1;
            if healthy >= need {
                return true;
            }
        }
    }
    false
}

fn pick_in_region<H: HealthView + ?Sized>(
    table: &RoutingTable,
    region: RegionId,
    bucket: u32,
    req: &Request<'_>,
    health: &H,
    reason: Reason,
) -> Option<Route> {
    if !region_available(table, region, health) {
        return None;
    }
    let r = table.region(region);
    let assigned = if bucket < r.canary_bps {
        Track::Canary
    } else {
        Track::Stable
    };
    // Backend choice uses other hash bits than the bucket, so the two are independent.
    let pick = req.sticky.rotate_left(32);
    for (track, fallback) in [(assigned, false), (assigned.other(), true)] {
        let available = r.tracks[track.index()]
            .walk(pick)
            .find(|&b| !req.tried.contains(&b) && health.is_healthy(b));
        if let Some(backend) = available {
            return Some(Route {
                region,
                backend,
                track,
                reason,
                track_fallback: fallback,
            });
        }
    }
    None
}

/// The canary bucket (0..10000) of a sticky hash.
pub fn bucket(sticky: u64) -> u32 {
    // Multiply-shift maps the hash uniformly onto 0..BUCKETS without the
    // bias of `%`; the result is < BUCKETS so it fits in u32.
    ((u128::from(sticky) * u128::from(BUCKETS)) >> 64) as u32
}

/// Stable 64-bit hash of `(salt, key)`: FNV-1a over the bytes, finished with
/// the murmur3 avalanche. It is specified here rather than borrowed from a
/// hasher crate because every proxy, build and version must agree on it.
pub fn sticky_hash(salt: &[u8], key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = OFFSET;
    for &b in salt.iter().chain(&[0xff]).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_ALICE: u32 = 6374;

    fn canary_share(bps: u32, keys: u32) -> f64 {
        let n = (0..keys)
            .filter(|k| bucket(sticky_hash(b"covergen-2026", format!("key-{k}").as_bytes())) < bps)
            .count();
        n as f64 / f64::from(keys)
    }

    #[test]
    fn canary_share_is_within_half_a_point_over_100k_keys() {
        for bps in [100, 500, 2500, 5000] {
            let got = canary_share(bps, 100_000);
            let want = f64::from(bps) / f64::from(BUCKETS);
            assert!(
                (got - want).abs() <= 0.005,
                "{bps} bps: {got:.4} vs {want:.4}"
            );
        }
    }

    #[test]
    fn raising_the_share_never_moves_a_user_back_to_stable() {
        let keys: Vec<u64> = (0..100_000u32)
            .map(|k| sticky_hash(b"covergen-2026", format!("user-{k}").as_bytes()))
            .collect();
        let canary = |bps: u32| -> Vec<bool> { keys.iter().map(|&h| bucket(h) < bps).collect() };
        let (a, b, c) = (canary(500), canary(1000), canary(2500));
        for i in 0..keys.len() {
            assert!(!a[i] || b[i], "key {i} left canary going 5% -> 10%");
            assert!(!b[i] || c[i], "key {i} left canary going 10% -> 25%");
        }
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // Pinned values: every proxy, version and platform must agree.
        assert_eq!(
            sticky_hash(b"covergen-2026", b"alice"),
            sticky_hash(b"covergen-2026", b"alice")
        );
        assert_ne!(
            sticky_hash(b"covergen-2026", b"alice"),
            sticky_hash(b"other-salt", b"alice")
        );
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(
            sticky_hash(b"", b""),
            1_998_855_519_756_462_295,
            "golden value changed"
        );
        assert_eq!(
            bucket(sticky_hash(b"covergen-2026", b"alice")),
            GOLDEN_ALICE,
            "golden value changed"
        );
    }
}
