#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `candidates()`, `region_available()` and `assigned_track()` against the
//! oracle of `oracle/mod.rs`: the regions `decide()` tries, in order and
//! with their reasons (the pin or home, its failover list, then the rest of
//! the allowed set by RTT), the availability rule and the canary split, for
//! random tables, health, RTT, classes and sticky hashes.
//!
//! Nothing here calls `decide()`, which loops forever under some mutants of
//! the candidate order; this file sorts before `decide_props.rs`, so cargo
//! mutants sees these tests fail before that one hangs.

mod oracle;

use edgesteer_config::model::Track;
use edgesteer_config::route::{
    assigned_track, candidates, region_available, Decision, Reason, Request,
};
use edgesteer_config::RegionId;
use oracle::*;
use proptest::prelude::*;

/// `candidates()` for `a` (at most 64, so a looping iterator still ends).
fn actual_candidates(w: &World, a: &Ask) -> Result<Vec<(usize, Reason)>, usize> {
    let req = Request {
        class: class(a),
        pin: a.pin.map(|p| RegionId(p as u8)),
        sticky: a.sticky,
        tried: &[],
    };
    match candidates(&w.table, &req, w) {
        Ok(c) => Ok(c.take(64).map(|(r, why)| (r.index(), why)).collect()),
        Err(Decision::PinOutsideZone { pinned, .. }) => Err(pinned.index()),
        Err(other) => panic!("candidates refused with {other:?}"),
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn candidates_match_the_oracle((rs, ask) in world_and_ask()) {
        let w = World::new(rs);
        let want = match ask.pin {
            Some(p) if !ask.allowed[p] => Err(p),
            Some(p) => Ok(oracle_candidates(&w.rs, &ask.allowed, p, Reason::Pin)),
            None => Ok(oracle_candidates(&w.rs, &ask.allowed, ask.home, Reason::Home)),
        };
        prop_assert_eq!(actual_candidates(&w, &ask), want, "{:?}", ask);
    }

    #[test]
    fn region_available_matches_the_rule(rs in regions()) {
        let w = World::new(rs);
        for (i, r) in w.rs.iter().enumerate() {
            prop_assert_eq!(region_available(&w.table, RegionId(i as u8), &w), available(r), "{:?}", r);
        }
    }

    #[test]
    fn assigned_track_is_canary_below_the_share(rs in regions(), sticky in sticky()) {
        let w = World::new(rs);
        for (i, r) in w.rs.iter().enumerate() {
            let want = if is_canary(sticky, r.canary_bps) { Track::Canary } else { Track::Stable };
            prop_assert_eq!(assigned_track(&w.table, RegionId(i as u8), sticky), want);
        }
    }
}
