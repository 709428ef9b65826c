//! Tests of per-policy limiter state: eviction, the key cap, abuse
//! streaks and the global-use queue.

use super::*;
use edgesteer_config::ratelimit::{LimitKey, StoreFailure};

pub(crate) fn policy(max_keys: u32) -> RateLimitPolicy {
    RateLimitPolicy {
        name: "t".into(),
        key: LimitKey::ClientIp,
        scope: LimitScope::Local,
        on_store_error: StoreFailure::Open,
        response_headers: false,
        hosts: vec![],
        path_prefixes: vec![],
        tiers: vec![LimitTier::new("default", 10, 2)],
        default_tier: 0,
        keys: Default::default(),
        hashed_keys: Default::default(),
        max_keys,
        abuse: None,
    }
}

pub(crate) const S: u64 = 1_000_000_000;

#[test]
fn idle_keys_are_evicted_without_changing_answers() {
    let p = policy(100);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    for k in 1..=50 {
        assert!(st.check(k, tier, None, 10 * S, false).verdict.allowed);
    }
    assert_eq!(st.keys(), 50);
    // Still inside the window: nothing goes.
    assert_eq!(st.sweep(10 * S), 50);
    // 3 s later every cell is idle.
    assert_eq!(st.sweep(13 * S), 0);
    assert!(st.check(1, tier, None, 13 * S, false).verdict.allowed);
}

#[test]
fn past_the_cap_keys_share_overflow_cells_and_stay_limited() {
    let p = policy(10);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    for k in 1..=10 {
        st.check(k, tier, None, S, false);
    }
    assert_eq!(st.keys(), 10);
    // Key 1000 is untracked: still limited to its burst of 2.
    let allowed = (0..10)
        .filter(|_| st.check(1000, tier, None, S, false).verdict.allowed)
        .count();
    assert_eq!(allowed, 2);
    assert_eq!(st.keys(), 10);
    assert_eq!(st.overflowed.load(Ordering::Relaxed), 10);
}

#[test]
fn a_stale_abuse_streak_does_not_pin_a_key() {
    let p = policy(10);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    let abuse = Some((2, 5));
    // Over the threshold in second 100, one request in 101 (streak 1),
    // then silence.
    for i in 0..5 {
        st.check(9, tier, abuse, 100 * S + i, false);
    }
    st.check(9, tier, abuse, 101 * S, false);
    assert_eq!(st.sweep(101 * S + 500_000_000), 1, "streak is live");
    assert_eq!(st.sweep(103 * S), 0, "a streak two seconds old is dead");
}

#[test]
fn global_use_is_queued_once_and_kept_until_the_round_ends() {
    let mut p = policy(10);
    p.scope = LimitScope::Global;
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    for _ in 0..3 {
        st.check(5, tier, None, S, true);
    }
    assert_eq!(st.dirty.len(), 1, "queued once");
    let key = st.dirty.pop().unwrap();
    let cell = st.map.get(&key).unwrap();
    assert_eq!(
        cell.take_pending(),
        2 * tier.interval_ns,
        "burst 2 admitted"
    );
    drop(cell);
    // In flight: the sweeper must keep it even when its TAT is past.
    assert_eq!(st.sweep(100 * S), 1);
    let cell = st.map.get(&key).unwrap();
    assert!(!cell.finish_round(), "nothing new: flag cleared");
    drop(cell);
    assert_eq!(st.sweep(100 * S), 0);
    // Without a store (sync = false) nothing is queued or kept.
    st.check(6, tier, None, S, false);
    assert!(st.dirty.is_empty());
    assert_eq!(st.sweep(100 * S), 0);
}

#[test]
fn abuse_needs_consecutive_seconds_above_the_threshold() {
    let p = policy(10);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    let abuse = Some((20, 3));
    let mut flagged_at = None;
    'outer: for sec in 100..110u64 {
        for i in 0..30 {
            if st.check(7, tier, abuse, sec * S + i, false).abusive {
                flagged_at = Some(sec);
                break 'outer;
            }
        }
    }
    // Seconds 100, 101 and 102 were over; judged when 103 starts.
    assert_eq!(flagged_at, Some(103));

    // A quiet second in between breaks the streak.
    let st = PolicyState::new(&p);
    for sec in [200u64, 201, 203, 204] {
        for i in 0..30 {
            assert!(
                !st.check(7, tier, abuse, sec * S + i, false).abusive,
                "{sec}"
            );
        }
    }
}

#[test]
fn a_second_at_the_threshold_is_not_above_it() {
    let p = policy(10);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    for sec in 300..310u64 {
        for i in 0..20 {
            let c = st.check(7, tier, Some((20, 2)), sec * S + i, false);
            assert!(
                !c.abusive,
                "{sec}: 20 requests/s flagged at a threshold of 20"
            );
        }
    }
}

#[test]
fn a_lowered_cap_applies_to_the_next_new_key() {
    let p = policy(10);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    st.check(1, tier, None, S, false);
    st.set_max_keys(1);
    st.check(2, tier, None, S, false);
    assert_eq!((st.keys(), st.overflowed.load(Ordering::Relaxed)), (1, 1));
    st.set_max_keys(10);
    st.check(3, tier, None, S, false);
    assert_eq!((st.keys(), st.overflowed.load(Ordering::Relaxed)), (2, 1));
}

#[test]
fn a_reset_key_starts_afresh() {
    let p = policy(10);
    let st = PolicyState::new(&p);
    let tier = &p.tiers[0];
    let abuse = Some((1, 1));
    for sec in 0..3 {
        for i in 0..3 {
            st.check(4, tier, abuse, (10 + sec) * S + i, false);
        }
    }
    assert!(!st.check(4, tier, None, 12 * S, false).verdict.allowed);
    st.reset(4);
    // The full burst again, and the abuse streak forgotten.
    for _ in 0..2 {
        let c = st.check(4, tier, abuse, 12 * S, false);
        assert!(c.verdict.allowed && !c.abusive);
    }
}

#[test]
fn the_map_hasher_takes_every_byte_in_order() {
    use std::hash::BuildHasher;
    let h = Seeded::new();
    let of = |b: &[u8]| h.hash_one(b);
    let all = [
        of(&[1, 2]),
        of(&[2, 1]),
        of(&[3, 2]),
        of(&[1, 2, 3]),
        of(&[]),
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(h.hash_one(7u64), h.hash_one(7u64));
    assert_ne!(h.hash_one(7u64), h.hash_one(8u64));
}
