#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Hand-picked routing cases, each with its expected answer written out:
//! the availability rule's edges (1 of 1, 1 of 2, 1 of 3, 2 of 3, 2 of 4,
//! drained, weight 0, both tracks), failover order against latency order,
//! the canary boundary (a bucket equal to the share is stable), and the
//! fixed values of `AllHealthy` and `Reason::as_str`.

use std::collections::{HashMap, HashSet};

use edgesteer_config::model::{ClientClass, HomeVia, RegionSet, Track};
use edgesteer_config::route::{
    assigned_track, bucket, candidates, decide, region_available, AllHealthy, Decision, HealthView,
    Reason, Request, Route,
};
use edgesteer_config::wire::{BackendSpec, RegionSpec, TableSpec};
use edgesteer_config::{compile, BackendId, RegionId, RoutingTable};

/// A backend: `(address, weight, canary, up)`.
type B = (&'static str, u32, bool, bool);

struct Case {
    table: RoutingTable,
    up: HashSet<String>,
    rtt: HashMap<String, u32>,
}

impl HealthView for Case {
    fn is_healthy(&self, b: BackendId) -> bool {
        self.up.contains(&self.table.backend(b).key)
    }
    fn region_rtt_us(&self, r: RegionId) -> Option<u32> {
        self.table
            .regions
            .get(r.index())
            .and_then(|r| self.rtt.get(&r.name).copied())
    }
}

/// A region: `(name, drained, canary_bps, failover, backends)`.
type RegionRow<'a> = (&'a str, bool, u32, &'a [&'a str], &'a [B]);

fn case(regions: &[RegionRow<'_>]) -> Case {
    let mut spec = TableSpec {
        default_region: regions[0].0.into(),
        ..Default::default()
    };
    let mut up = HashSet::new();
    for &(name, drain, canary_bps, failover, backends) in regions {
        for &(a, _, _, is_up) in backends {
            if is_up {
                up.insert(a.to_string());
            }
        }
        let backends = backends.iter().map(|&(a, weight, canary, _)| BackendSpec {
            address: a.into(),
            weight,
            track: canary.then(|| "canary".into()),
        });
        spec.regions.insert(
            name.into(),
            RegionSpec {
                failover: failover.iter().map(|f| f.to_string()).collect(),
                canary_bps,
                drain,
                backends: backends.collect(),
                ..Default::default()
            },
        );
    }
    Case {
        table: compile(&spec).unwrap(),
        up,
        rtt: HashMap::new(),
    }
}

impl Case {
    fn id(&self, name: &str) -> RegionId {
        self.table.region_by_name(name).unwrap()
    }

    fn available(&self, name: &str) -> bool {
        region_available(&self.table, self.id(name), self)
    }

    fn request(&self, home: &str, allowed: &[&str], sticky: u64) -> Request<'static> {
        let mut set = RegionSet::EMPTY;
        for a in allowed {
            set.insert(self.id(a));
        }
        let class = ClientClass {
            zone: None,
            allowed: set,
            home: self.id(home),
            home_via: HomeVia::Country,
        };
        Request {
            class,
            pin: None,
            sticky,
            tried: &[],
        }
    }

    /// `(region, reason)` names of the candidates for `req`.
    fn candidates(&self, req: &Request<'_>) -> Vec<(String, Reason)> {
        let Ok(c) = candidates(&self.table, req, self) else {
            panic!("refused")
        };
        let c = c
            .take(16)
            .map(|(r, why)| (self.table.region(r).name.clone(), why));
        c.collect()
    }

    /// `(region, backend address, reason)` of the decision for `req`.
    fn routed(&self, req: &Request<'_>) -> Option<(String, String, Reason)> {
        match decide(&self.table, req, self) {
            Decision::Route(Route {
                region,
                backend,
                reason,
                ..
            }) => Some((
                self.table.region(region).name.clone(),
                self.table.backend(backend).key.clone(),
                reason,
            )),
            _ => None,
        }
    }
}

const UP: bool = true;
const DOWN: bool = false;

/// Backends written as tokens: `s` stable, `c` canary, `0` stable with
/// weight 0; then `+` up or `-` down.
fn backends(region: usize, tokens: &str) -> Vec<B> {
    let addr = |j: usize| -> &'static str { format!("1.0.{region}.{j}:1").leak() };
    let b = |(j, t): (usize, &str)| match t {
        "s+" | "s-" => (addr(j), 1, false, t == "s+"),
        "c+" | "c-" => (addr(j), 1, true, t == "c+"),
        "0+" | "0-" => (addr(j), 0, false, t == "0+"),
        _ => panic!("bad token {t}"),
    };
    tokens.split(' ').enumerate().map(b).collect()
}

#[test]
fn a_region_is_available_with_half_its_backends_and_at_least_one() {
    // (name, drained, backends, available)
    let cases = [
        ("one-of-1", false, "s+", true),
        ("one-of-2", false, "s+ s-", true),
        ("one-of-3", false, "s+ s- s-", false),
        ("two-of-3", false, "s- s+ s+", true),
        ("two-of-4", false, "s+ s- s- s+", true),
        ("one-of-4", false, "s+ s- s- s-", false),
        ("none-of-1", false, "s-", false),
        ("drained", true, "s+ s+", false),
        // Weight-0 backends take no traffic, so they count neither way.
        ("weight0-down", false, "s+ 0- 0-", true),
        ("weight0-up", false, "s- 0+ 0+", false),
        ("only-weight0", false, "0+", false),
        // Both tracks count.
        ("tracks-1-of-3", false, "s+ c- c-", false),
        ("tracks-1-of-2", false, "c+ s-", true),
        ("tracks-2-of-5", false, "s+ s+ s- s- c-", false),
        ("tracks-3-of-5", false, "s- s+ s- s+ c+", true),
    ];
    let bs: Vec<Vec<B>> = (0..cases.len()).map(|i| backends(i, cases[i].2)).collect();
    let regions: Vec<_> = cases
        .iter()
        .zip(&bs)
        .map(|(&(name, drained, _, _), b)| (name, drained, 0, &[][..], &b[..]))
        .collect();
    let c = case(&regions);
    for (name, _, tokens, ok) in cases {
        assert_eq!(c.available(name), ok, "{name}: {tokens}");
    }
}

#[test]
fn a_region_below_half_sends_its_clients_down_the_failover_list() {
    let c = case(&[
        (
            "home",
            false,
            0,
            &["next"],
            &[
                ("1.0.0.1:1", 1, false, UP),
                ("1.0.0.2:1", 1, false, DOWN),
                ("1.0.0.3:1", 1, false, DOWN),
            ],
        ),
        ("next", false, 0, &[], &[("1.0.1.1:1", 1, false, UP)]),
    ]);
    let req = c.request("home", &["home", "next"], 7);
    let want = (
        "next".to_string(),
        "1.0.1.1:1".to_string(),
        Reason::Failover,
    );
    assert_eq!(c.routed(&req), Some(want));
}

/// The failover list is tried in its own order, skipping regions outside
/// the allowed set; only then the rest of the allowed set by RTT.
#[test]
fn failover_order_comes_before_latency_order() {
    let one = |a| [(a, 1, false, UP)];
    let (f1, f2, f3, x) = (
        one("1.0.1.1:1"),
        one("1.0.2.1:1"),
        one("1.0.3.1:1"),
        one("1.0.9.1:1"),
    );
    let mut c = case(&[
        (
            "home",
            false,
            0,
            &["x", "f1", "f2"],
            &[("1.0.0.1:1", 1, false, DOWN)],
        ),
        ("f1", false, 0, &[], &f1),
        ("f2", false, 0, &[], &f2),
        ("f3", false, 0, &[], &f3),
        ("x", false, 0, &[], &x),
    ]);
    for (r, rtt) in [("f1", 900), ("f2", 100), ("f3", 50), ("x", 1)] {
        c.rtt.insert(r.into(), rtt);
    }
    let req = c.request("home", &["home", "f1", "f2", "f3"], 7);
    let names = |v: &[(&str, Reason)]| -> Vec<(String, Reason)> {
        v.iter().map(|&(n, r)| (n.to_string(), r)).collect()
    };
    let want = [
        ("home", Reason::Home),
        ("f1", Reason::Failover),
        ("f2", Reason::Failover),
        ("f3", Reason::LatencyFallback),
    ];
    assert_eq!(c.candidates(&req), names(&want));
    let routed = |c: &Case| c.routed(&req).map(|(r, _, why)| (r, why));
    assert_eq!(routed(&c), Some(("f1".into(), Reason::Failover)));
    c.up.remove("1.0.1.1:1");
    assert_eq!(routed(&c), Some(("f2".into(), Reason::Failover)));
    c.up.remove("1.0.2.1:1");
    assert_eq!(routed(&c), Some(("f3".into(), Reason::LatencyFallback)));
    c.up.remove("1.0.3.1:1");
    assert_eq!(routed(&c), None, "x is not allowed");
}

/// `compile()` rejects a failover list that names its own region or a
/// region twice, so this needs a hand-edited table: the candidates still
/// offer each region once.
#[test]
fn candidates_offer_each_region_once_even_for_a_hand_edited_failover_list() {
    let mut c = case(&[
        ("a", false, 0, &[], &[("1.0.0.1:1", 1, false, DOWN)]),
        ("b", false, 0, &[], &[("1.0.1.1:1", 1, false, DOWN)]),
        ("c", false, 0, &[], &[("1.0.2.1:1", 1, false, DOWN)]),
    ]);
    let (a, b) = (c.id("a"), c.id("b"));
    c.table.regions[a.index()].failover = vec![a, b, b];
    let req = c.request("a", &["a", "b", "c"], 7);
    let want: Vec<(String, Reason)> = vec![
        ("a".into(), Reason::Home),
        ("b".into(), Reason::Failover),
        ("c".into(), Reason::LatencyFallback),
    ];
    assert_eq!(c.candidates(&req), want);
    assert_eq!(c.routed(&req), None);
}

/// The first hash whose bucket is `b`: `ceil(b * 2^64 / 10000)`.
fn first_hash_of_bucket(b: u32) -> u64 {
    u64::try_from((u128::from(b) << 64).div_ceil(10_000)).unwrap()
}

#[test]
fn buckets_split_the_hash_space_evenly() {
    for b in [1, 2, 2_499, 2_500, 2_501, 9_999] {
        let h = first_hash_of_bucket(b);
        assert_eq!(bucket(h), b, "first hash of bucket {b}");
        assert_eq!(bucket(h - 1), b - 1, "last hash of bucket {}", b - 1);
    }
    assert_eq!((bucket(0), bucket(u64::MAX)), (0, 9_999));
}

/// A bucket below the share is canary; a bucket equal to it is stable.
#[test]
fn the_canary_boundary_is_exclusive() {
    let backends = [("1.0.0.1:1", 1, false, UP), ("1.0.0.2:1", 1, true, UP)];
    for bps in [1, 2_500, 9_999] {
        let c = case(&[("r", false, bps, &[], &backends)]);
        let r = c.id("r");
        let last_canary = first_hash_of_bucket(bps) - 1;
        let first_stable = first_hash_of_bucket(bps);
        for (sticky, track, addr) in [
            (last_canary, Track::Canary, "1.0.0.2:1"),
            (first_stable, Track::Stable, "1.0.0.1:1"),
            (first_stable + 1, Track::Stable, "1.0.0.1:1"),
        ] {
            assert_eq!(
                assigned_track(&c.table, r, sticky),
                track,
                "{bps} bps, {sticky}"
            );
            let req = c.request("r", &["r"], sticky);
            let Decision::Route(route) = decide(&c.table, &req, &c) else {
                panic!("no route")
            };
            assert_eq!((route.track, route.track_fallback), (track, false), "{bps}");
            assert_eq!(c.table.backend(route.backend).key, addr);
        }
    }
    // 0 bps: nobody is canary; 10000 bps: everybody is.
    for (bps, sticky, track) in [(0, 0, Track::Stable), (10_000, u64::MAX, Track::Canary)] {
        let c = case(&[("r", false, bps, &[], &backends)]);
        assert_eq!(assigned_track(&c.table, c.id("r"), sticky), track, "{bps}");
    }
}

#[test]
fn all_healthy_has_every_backend_up_and_no_rtt() {
    let c = case(&[("r", false, 0, &[], &[("1.0.0.1:1", 1, false, DOWN)])]);
    for b in [BackendId(0), BackendId(7)] {
        assert!(AllHealthy.is_healthy(b));
    }
    for r in [RegionId(0), RegionId(127)] {
        assert_eq!(AllHealthy.region_rtt_us(r), None);
    }
    let req = c.request("r", &["r"], 1);
    assert!(matches!(
        decide(&c.table, &req, &AllHealthy),
        Decision::Route(_)
    ));
}

/// The labels of metrics and access logs.
#[test]
fn reason_labels_are_fixed() {
    let labels = [
        (Reason::Home, "home"),
        (Reason::Pin, "pin"),
        (Reason::Failover, "failover"),
        (Reason::LatencyFallback, "latency_fallback"),
    ];
    for (r, s) in labels {
        assert_eq!(r.as_str(), s);
    }
}
