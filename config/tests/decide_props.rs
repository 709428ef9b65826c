#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Property tests of `compile` and `decide` against an oracle written from
//! the wire format alone: for random tables that compile, random health
//! states, clients and pins, no decision ever leaves the client's allowed
//! set, healthy is preferred, and 503 happens only when nothing allowed is
//! healthy.

mod zone_oracle;
use zone_oracle::oracle_allowed;

use std::collections::HashSet;

use edgesteer_config::route::{decide, Decision, HealthView, Request};
use edgesteer_config::wire::{BackendSpec, RegionSpec, TableSpec, ZoneSpec};
use edgesteer_config::{compile, BackendId, Country, RegionId};
use proptest::prelude::*;

const COUNTRIES: [&str; 12] = [
    "US", "BR", "DE", "FR", "CN", "HK", "AE", "ZA", "JP", "AU", "RU", "IN",
];
const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

#[derive(Debug, Clone)]
struct Shape {
    regions: usize,
    /// Zone of each region: None or Some(0..3).
    region_zone: Vec<Option<usize>>,
    isolated: [bool; 3],
    /// Zone confining each country (if that zone has regions).
    country_zone: Vec<Option<usize>>,
    /// Random picks used to choose mapping targets and failovers.
    picks: Vec<usize>,
    failover_raw: Vec<Vec<usize>>,
    backends: Vec<usize>,
    drained: Vec<bool>,
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..7).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(prop::option::of(0usize..3), n),
            any::<[bool; 3]>(),
            prop::collection::vec(prop::option::weighted(0.4, 0usize..3), COUNTRIES.len()),
            prop::collection::vec(any::<usize>(), 64),
            prop::collection::vec(prop::collection::vec(0usize..n, 0..4), n),
            prop::collection::vec(1usize..4, n),
            prop::collection::vec(prop::bool::weighted(0.15), n),
        )
            .prop_map(
                |(
                    regions,
                    region_zone,
                    isolated,
                    country_zone,
                    picks,
                    failover_raw,
                    backends,
                    drained,
                )| {
                    Shape {
                        regions,
                        region_zone,
                        isolated,
                        country_zone,
                        picks,
                        failover_raw,
                        backends,
                        drained,
                    }
                },
            )
    })
}

fn rname(i: usize) -> String {
    format!("r{i}")
}

/// Builds a spec from a shape. Failover lists are taken raw (they may break
/// the zone rules); mappings are chosen to be legal so most tables compile.
fn build(s: &Shape) -> TableSpec {
    let mut pick = s.picks.iter().copied().cycle();
    let zone_regions = |z: usize| -> Vec<usize> {
        (0..s.regions)
            .filter(|&r| s.region_zone[r] == Some(z))
            .collect()
    };
    let open: Vec<usize> = (0..s.regions)
        .filter(|&r| s.region_zone[r].is_none_or(|z| !s.isolated[z]))
        .collect();
    let mut spec = TableSpec {
        default_region: rname(open.first().copied().unwrap_or(0)),
        ..Default::default()
    };
    for z in 0..3 {
        let countries: Vec<String> = COUNTRIES
            .iter()
            .zip(&s.country_zone)
            .filter(|(_, cz)| **cz == Some(z) && !zone_regions(z).is_empty())
            .map(|(c, _)| c.to_string())
            .collect();
        spec.zones.insert(
            format!("z{z}"),
            ZoneSpec {
                isolated: s.isolated[z],
                countries,
            },
        );
    }
    for c in CONTINENTS {
        if !open.is_empty() {
            let r = open[pick.next().unwrap_or(0) % open.len()];
            spec.geo.continents.insert(c.into(), rname(r));
        }
    }
    for (i, c) in COUNTRIES.iter().enumerate() {
        let confined = s.country_zone[i].filter(|&z| !zone_regions(z).is_empty());
        let choices = match confined {
            Some(z) => zone_regions(z),
            None => open.clone(),
        };
        if !choices.is_empty() && (confined.is_some() || pick.next().unwrap_or(0) % 2 == 0) {
            let r = choices[pick.next().unwrap_or(0) % choices.len()];
            spec.geo.countries.insert(c.to_string(), rname(r));
        }
    }
    for r in 0..s.regions {
        let mut seen = HashSet::new();
        // Legal edges stay; an illegal one is kept now and then so that
        // compile's rejection is exercised too.
        let legal = |t: usize| match s.region_zone[r] {
            Some(z) => s.region_zone[t] == Some(z),
            None => s.region_zone[t].is_none_or(|z| !s.isolated[z]),
        };
        let failover = s.failover_raw[r]
            .iter()
            .copied()
            .filter(|&t| t != r && seen.insert(t))
            .filter(|&t| legal(t) || pick.next().unwrap_or(0) % 8 == 0)
            .map(rname)
            .collect();
        let backends = (0..s.backends[r])
            .map(|b| BackendSpec {
                address: format!("127.0.0.{}:{}", r + 1, 1000 + b),
                weight: 1,
                track: if b == 2 { Some("canary".into()) } else { None },
            })
            .collect();
        spec.regions.insert(
            rname(r),
            RegionSpec {
                zone: s.region_zone[r].map(|z| format!("z{z}")),
                failover,
                canary_bps: 2_500,
                drain: s.drained[r],
                capacity: None,
                health: None,
                upstream: None,
                rollout: None,
                backends,
            },
        );
    }
    spec
}

struct Bits(Vec<bool>);

impl HealthView for Bits {
    fn is_healthy(&self, b: BackendId) -> bool {
        self.0.get(b.index()).copied().unwrap_or(false)
    }
    fn region_rtt_us(&self, r: RegionId) -> Option<u32> {
        Some(u32::from(r.0) * 7 % 5)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_never_leaves_the_allowed_set(
        s in shape(),
        health_bits in prop::collection::vec(any::<bool>(), 32),
        country in prop::option::of(0usize..COUNTRIES.len()),
        pin in prop::option::of(0usize..8),
        sticky in any::<u64>(),
    ) {
        let spec = build(&s);
        let Ok(table) = compile(&spec) else {
            // Only failover lists (and a table whose every region is
            // isolated, so no default region is legal) may be rejected.
            let err = compile(&spec).unwrap_err();
            let no_open_region = (0..s.regions).all(|r| s.region_zone[r].is_some_and(|z| s.isolated[z]));
            prop_assert!(
                err.errors().iter().all(|e| e.path.contains(".failover[") || (no_open_region && e.path == "default_region")),
                "{err}"
            );
            return Ok(());
        };
        // Every failover edge that survived respects the zones.
        for r in &table.regions {
            for &f in &r.failover {
                let (rz, fz) = (r.zone, table.region(f).zone);
                if rz.is_some() { prop_assert_eq!(rz, fz); }
                else if let Some(z) = fz { prop_assert!(!table.zone(z).isolated); }
            }
        }
        let health = Bits(health_bits);
        let cc = country.map(|i| COUNTRIES[i]);
        let class = table.classify(cc.and_then(Country::parse), None);
        let allowed = oracle_allowed(&spec, cc);
        let pin = pin.filter(|&p| p < table.regions.len()).map(|p| RegionId(p as u8));
        let req = Request { class, pin, sticky, tried: &[] };
        // The availability rule, restated: not drained, and at least half of
        // the region's backends (all weight 1 here) healthy, at least one.
        let usable = |r: &edgesteer_config::model::Region| {
            let up = r.backends.iter().filter(|&&b| health.is_healthy(b)).count();
            !r.drained && up >= 1 && 2 * up >= r.backends.len()
        };
        let any_allowed_healthy = table.regions.iter().any(|r| allowed[&r.name] && usable(r));
        match decide(&table, &req, &health) {
            Decision::Route(route) => {
                let name = &table.region(route.region).name;
                prop_assert!(allowed[name], "{:?} routed to {} outside {:?}", cc, name, allowed);
                prop_assert!(health.is_healthy(route.backend), "picked an unhealthy backend");
                prop_assert!(!table.region(route.region).drained, "routed to a drained region");
                prop_assert_eq!(table.backend(route.backend).region, route.region);
                // The home (or pin) wins whenever it has a healthy backend.
                let first = pin.unwrap_or(class.home);
                let first_healthy = usable(table.region(first));
                if first_healthy && allowed[&table.region(first).name] {
                    prop_assert_eq!(route.region, first);
                }
            }
            Decision::NoHealthyBackend { .. } => {
                prop_assert!(pin.is_none_or(|p| allowed[&table.region(p).name]));
                prop_assert!(!any_allowed_healthy, "503 although an allowed region is healthy");
            }
            Decision::PinOutsideZone { pinned, .. } => {
                prop_assert_eq!(Some(pinned), pin);
                prop_assert!(!allowed[&table.region(pinned).name]);
            }
        }
    }

    /// Retries from every client class (every zone, and none), with a pin
    /// or not, under any health: each attempt stays in the client's
    /// allowed set (by the oracle over the written table), picks a
    /// healthy backend, never repeats one, and the chain ends.
    #[test]
    fn retries_stay_in_the_zone_and_never_repeat_a_backend(
        s in shape(),
        health_bits in prop::collection::vec(any::<bool>(), 32),
        country in prop::option::of(0usize..COUNTRIES.len()),
        pin in prop::option::of(0usize..8),
        sticky in any::<u64>(),
    ) {
        let spec = build(&s);
        let Ok(table) = compile(&spec) else { return Ok(()) };
        let health = Bits(health_bits);
        let cc = country.map(|i| COUNTRIES[i]);
        let class = table.classify(cc.and_then(Country::parse), None);
        let allowed = oracle_allowed(&spec, cc);
        let pin = pin.filter(|&p| p < table.regions.len()).map(|p| RegionId(p as u8));
        let mut tried = Vec::new();
        while let Decision::Route(r) = decide(&table, &Request { class, pin, sticky, tried: &tried }, &health) {
            let name = &table.region(r.region).name;
            prop_assert!(allowed[name], "attempt {} of {:?} went to {} outside {:?}", tried.len() + 1, cc, name, allowed);
            prop_assert!(health.is_healthy(r.backend), "a retry picked an unhealthy backend");
            prop_assert!(!tried.contains(&r.backend), "a retry repeated a backend");
            tried.push(r.backend);
            prop_assert!(tried.len() <= table.backends.len());
        }
    }
}

/// The generator must mostly produce valid tables, or the property above
/// would pass vacuously.
#[test]
fn generator_mostly_compiles() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let ok = (0..500)
        .filter(|_| {
            let s = shape().new_tree(&mut runner).map(|t| t.current());
            s.is_ok_and(|s| compile(&build(&s)).is_ok())
        })
        .count();
    assert!(ok > 250, "only {ok}/500 generated tables compile");
}
