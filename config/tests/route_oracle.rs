#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `decide()` against the oracle of `oracle/mod.rs`, which restates the
//! routing rules on a plain model of the table: for random tables, health,
//! RTT, client classes, pins, sticky hashes (many right at a canary
//! boundary) and already-tried backends, the decision (region, backend,
//! track, reason, track fallback, or the refusal) is exactly the oracle's.

mod oracle;

use std::collections::HashMap;

use edgesteer_config::model::{Track, ZoneId};
use edgesteer_config::route::{decide, Decision, Request};
use edgesteer_config::{BackendId, RegionId};
use oracle::*;
use proptest::prelude::*;

/// `decide()` for `a`, in model terms.
fn actual_decide(w: &World, a: &Ask) -> Want {
    let tried: Vec<BackendId> = a.tried.iter().map(|k| w.ids[k]).collect();
    let req = Request {
        class: class(a),
        pin: a.pin.map(|p| RegionId(p as u8)),
        sticky: a.sticky,
        tried: &tried,
    };
    match decide(&w.table, &req, w) {
        Decision::Route(r) => {
            let (region, backend) = w.names[&r.backend];
            assert_eq!(
                r.region.index(),
                region,
                "backend outside the route's region"
            );
            Want::Route {
                region,
                backend,
                canary: r.track == Track::Canary,
                reason: r.reason,
                fallback: r.track_fallback,
            }
        }
        Decision::PinOutsideZone { pinned, zone } => {
            assert_eq!(zone, a.zone.map(ZoneId));
            Want::PinOutside(pinned.index())
        }
        Decision::NoHealthyBackend { zone } => {
            assert_eq!(zone, a.zone.map(ZoneId));
            Want::NoHealthy
        }
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn decide_matches_the_oracle((rs, ask) in world_and_ask()) {
        let w = World::new(rs);
        prop_assert_eq!(actual_decide(&w, &ask), oracle_decide(&w.rs, &ask), "{:?}", ask);
    }
}

/// The generator must reach every kind of outcome, or the oracle test
/// above could pass without checking it.
#[test]
fn generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config(2_000));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..2_000 {
        let (rs, ask) = world_and_ask().new_tree(&mut runner).unwrap().current();
        let kind = match oracle_decide(&rs, &ask) {
            Want::Route {
                reason,
                fallback,
                canary,
                ..
            } => format!("{reason:?} fallback={fallback} canary={canary}"),
            other => format!("{other:?}").split('(').next().unwrap().to_string(),
        };
        *seen.entry(kind).or_default() += 1;
    }
    for reason in ["Home", "Pin", "Failover", "LatencyFallback"] {
        for fallback in [false, true] {
            for canary in [false, true] {
                let k = format!("{reason} fallback={fallback} canary={canary}");
                assert!(seen.get(&k).copied().unwrap_or(0) >= 5, "{k}: {seen:?}");
            }
        }
    }
    assert!(
        seen["PinOutside"] >= 20 && seen["NoHealthy"] >= 20,
        "{seen:?}"
    );
}
