//! The model and oracle shared by `candidates_oracle.rs` and
//! `route_oracle.rs`: a plain description of a table (regions, weighted
//! backends on two tracks, health, RTT) compiled through the wire format,
//! and the routing rules restated on it without calling the code under
//! test: the candidate order, the availability rule, the canary split and
//! the weighted backend walk.
#![allow(dead_code)] // each test file uses part of it

use std::collections::HashMap;

use edgesteer_config::model::{ClientClass, HomeVia, RegionSet, ZoneId};
use edgesteer_config::route::{HealthView, Reason};
use edgesteer_config::wire::{BackendSpec, RegionSpec, TableSpec};
use edgesteer_config::{compile, BackendId, RegionId, RoutingTable};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// One backend of the model.
#[derive(Clone, Debug)]
pub struct B {
    pub weight: u32,
    pub canary: bool,
    pub up: bool,
}

/// One region of the model; region `i` is named `r{i}`.
#[derive(Clone, Debug)]
pub struct R {
    pub backends: Vec<B>,
    pub canary_bps: u32,
    pub drained: bool,
    pub failover: Vec<usize>,
    pub rtt: Option<u32>,
}

pub fn addr(r: usize, b: usize) -> String {
    format!("10.0.{r}.{b}:80")
}

pub fn spec(rs: &[R]) -> TableSpec {
    let mut spec = TableSpec {
        default_region: "r0".into(),
        ..Default::default()
    };
    for (i, r) in rs.iter().enumerate() {
        let backends = r.backends.iter().enumerate().map(|(j, b)| BackendSpec {
            address: addr(i, j),
            weight: b.weight,
            track: b.canary.then(|| "canary".into()),
        });
        spec.regions.insert(
            format!("r{i}"),
            RegionSpec {
                failover: r.failover.iter().map(|f| format!("r{f}")).collect(),
                canary_bps: r.canary_bps,
                drain: r.drained,
                backends: backends.collect(),
                ..Default::default()
            },
        );
    }
    spec
}

/// A compiled model: the table, and the backend ids by `(region, index)`.
pub struct World {
    pub rs: Vec<R>,
    pub table: RoutingTable,
    pub ids: HashMap<(usize, usize), BackendId>,
    pub names: HashMap<BackendId, (usize, usize)>,
}

impl World {
    pub fn new(rs: Vec<R>) -> World {
        assert!(rs.len() <= 10, "region names must sort as their indices");
        let table = compile(&spec(&rs)).expect("the model always compiles");
        let mut ids = HashMap::new();
        for (i, r) in rs.iter().enumerate() {
            for j in 0..r.backends.len() {
                let b = table.backends.iter().find(|b| b.key == addr(i, j)).unwrap();
                ids.insert((i, j), b.id);
            }
        }
        let names = ids.iter().map(|(&k, &v)| (v, k)).collect();
        World {
            rs,
            table,
            ids,
            names,
        }
    }
}

/// Health and RTT straight from the model.
impl HealthView for World {
    fn is_healthy(&self, b: BackendId) -> bool {
        let (r, j) = self.names[&b];
        self.rs[r].backends[j].up
    }
    fn region_rtt_us(&self, r: RegionId) -> Option<u32> {
        self.rs.get(r.index()).and_then(|r| r.rtt)
    }
}

/// The canary rule, restated: a hash in the lowest `bps / 10000` of the
/// 64-bit hash space is canary.
pub fn is_canary(sticky: u64, bps: u32) -> bool {
    u128::from(sticky) * 10_000 < u128::from(bps) << 64
}

/// The first hash that is stable at `bps` (clamped to u64).
pub fn threshold(bps: u32) -> u64 {
    let t = (u128::from(bps) << 64).div_ceil(10_000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The availability rule, restated: not drained, and at least half of the
/// weighted backends healthy, and at least one.
pub fn available(r: &R) -> bool {
    let weighted = r.backends.iter().filter(|b| b.weight > 0);
    let n = weighted.clone().count();
    let up = weighted.filter(|b| b.up).count();
    !r.drained && up >= 1 && 2 * up >= n
}

/// The regions to try, in order: the pin (or home), its failover list, then
/// every other allowed region by RTT (unknown last, ties by index).
pub fn oracle_candidates(
    rs: &[R],
    allowed: &[bool],
    first: usize,
    why: Reason,
) -> Vec<(usize, Reason)> {
    let mut out: Vec<(usize, Reason)> = Vec::new();
    if allowed[first] {
        out.push((first, why));
    }
    for &f in &rs[first].failover {
        if allowed[f] && out.iter().all(|&(r, _)| r != f) {
            out.push((f, Reason::Failover));
        }
    }
    let mut rest: Vec<usize> = (0..rs.len())
        .filter(|&r| allowed[r] && out.iter().all(|&(o, _)| o != r))
        .collect();
    rest.sort_by_key(|&r| (rs[r].rtt.unwrap_or(u32::MAX), r));
    out.extend(rest.into_iter().map(|r| (r, Reason::LatencyFallback)));
    out
}

/// The weighted walk of one track: members are the track's weight>0
/// backends in table order; it starts at the first whose running weight
/// sum exceeds `hash % total`, then cycles.
pub fn walk(r: &R, canary: bool, hash: u64) -> Vec<usize> {
    let members: Vec<usize> = (0..r.backends.len())
        .filter(|&j| r.backends[j].canary == canary && r.backends[j].weight > 0)
        .collect();
    let total: u64 = members
        .iter()
        .map(|&j| u64::from(r.backends[j].weight))
        .sum();
    if total == 0 {
        return Vec::new();
    }
    let point = hash % total;
    let mut sum = 0;
    let start = members
        .iter()
        .position(|&j| {
            sum += u64::from(r.backends[j].weight);
            sum > point
        })
        .unwrap();
    (0..members.len())
        .map(|k| members[(start + k) % members.len()])
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    Route {
        region: usize,
        backend: usize,
        canary: bool,
        reason: Reason,
        fallback: bool,
    },
    PinOutside(usize),
    NoHealthy,
}

/// Inputs of one decision, in model terms.
#[derive(Clone, Debug)]
pub struct Ask {
    pub allowed: Vec<bool>,
    pub home: usize,
    pub pin: Option<usize>,
    pub sticky: u64,
    pub tried: Vec<(usize, usize)>,
    pub zone: Option<u8>,
}

pub fn oracle_decide(rs: &[R], a: &Ask) -> Want {
    let (first, why) = match a.pin {
        Some(p) if !a.allowed[p] => return Want::PinOutside(p),
        Some(p) => (p, Reason::Pin),
        None => (a.home, Reason::Home),
    };
    for (region, reason) in oracle_candidates(rs, &a.allowed, first, why) {
        let r = &rs[region];
        if !available(r) {
            continue;
        }
        let assigned = is_canary(a.sticky, r.canary_bps);
        for (canary, fallback) in [(assigned, false), (!assigned, true)] {
            let pick = walk(r, canary, a.sticky.rotate_left(32))
                .into_iter()
                .find(|&j| r.backends[j].up && !a.tried.contains(&(region, j)));
            if let Some(backend) = pick {
                return Want::Route {
                    region,
                    backend,
                    canary,
                    reason,
                    fallback,
                };
            }
        }
    }
    Want::NoHealthy
}

pub fn class(a: &Ask) -> ClientClass {
    let mut allowed = RegionSet::EMPTY;
    for (i, _) in a.allowed.iter().enumerate().filter(|(_, &ok)| ok) {
        allowed.insert(RegionId(i as u8));
    }
    ClientClass {
        zone: a.zone.map(ZoneId),
        allowed,
        home: RegionId(a.home as u8),
        home_via: HomeVia::Country,
    }
}

pub const BPS: [u32; 6] = [0, 1, 2_500, 5_000, 9_999, 10_000];

pub fn region(n: usize) -> impl Strategy<Value = R> {
    let backend = (
        prop::sample::select(vec![0u32, 1, 2, 5]),
        any::<bool>(),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(weight, canary, up)| B { weight, canary, up });
    (
        prop::collection::vec(backend, 1..5),
        prop::sample::select(BPS.to_vec()),
        prop::bool::weighted(0.15),
        prop::collection::vec(0..n, 0..4),
        prop::option::weighted(0.8, 0u32..4),
    )
        .prop_map(|(backends, canary_bps, drained, failover, rtt)| R {
            backends,
            canary_bps,
            drained,
            failover,
            rtt,
        })
}

/// Random regions with legal failover lists (others, each once).
pub fn regions() -> impl Strategy<Value = Vec<R>> {
    (1usize..6)
        .prop_flat_map(|n| prop::collection::vec(region(n), n))
        .prop_map(|mut rs| {
            for (i, r) in rs.iter_mut().enumerate() {
                let mut seen = Vec::new();
                r.failover.retain(|&f| {
                    f != i && !seen.contains(&f) && {
                        seen.push(f);
                        true
                    }
                });
            }
            rs
        })
}

/// A sticky hash: random, or right at some share's canary boundary.
pub fn sticky() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (prop::sample::select(BPS.to_vec()), -2i64..=2)
            .prop_map(|(bps, d)| threshold(bps).saturating_add_signed(d)),
    ]
}

pub fn world_and_ask() -> impl Strategy<Value = (Vec<R>, Ask)> {
    regions().prop_flat_map(|rs| {
        let n = rs.len();
        let backends: Vec<(usize, usize)> = rs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (0..r.backends.len()).map(move |j| (i, j)))
            .collect();
        let ask = (
            prop::collection::vec(prop::bool::weighted(0.75), n),
            0..n,
            prop::option::weighted(0.3, 0..n),
            sticky(),
            prop::collection::vec(prop::bool::weighted(0.2), backends.len()),
            prop::option::of(0u8..4),
        )
            .prop_map(move |(allowed, home, pin, sticky, tried_bits, zone)| Ask {
                allowed,
                home,
                pin,
                sticky,
                tried: backends
                    .iter()
                    .zip(tried_bits)
                    .filter(|(_, t)| *t)
                    .map(|(&b, _)| b)
                    .collect(),
                zone,
            });
        (Just(rs), ask)
    })
}

pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(31),
        failure_persistence: None,
        // Shrinking these inputs is slow; a failure must be reported fast.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}
