#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `gcra::check` against an oracle written as a debt bucket: the cell owes
//! `debt` nanoseconds (its TAT minus now, never below 0); a request adds
//! one interval of debt and passes while the debt stays within the
//! tolerance. Every field of every verdict is checked for random request
//! sequences (`remaining` counted one request at a time, `retry_after` as
//! the wait that lets the next request pass), plus the edges: a corrupt
//! TAT near `u64::MAX`, interval 0, and the exact tolerance boundary.

use std::sync::atomic::{AtomicU64, Ordering};

use edgesteer_ratelimit::gcra::{check, Verdict};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// The oracle's cell: the time its debt is measured from, and the debt.
struct Bucket {
    tat: u64,
}

impl Bucket {
    fn debt(&self, now: u64) -> u64 {
        self.tat.saturating_sub(now)
    }

    fn request(&mut self, now: u64, interval: u64, tolerance: u64) -> Verdict {
        let debt = self.debt(now);
        if debt + interval > tolerance {
            return Verdict {
                allowed: false,
                remaining: 0,
                reset_ns: debt,
                // Waiting w pays w of debt off; the request passes once
                // debt - w + interval <= tolerance.
                retry_after_ns: debt + interval - tolerance,
            };
        }
        let debt = debt + interval;
        self.tat = now + debt;
        // How many more requests would pass right now, one at a time.
        let mut remaining = 0u32;
        if interval > 0 {
            while debt + (u64::from(remaining) + 1) * interval <= tolerance {
                remaining += 1;
            }
        } else {
            remaining = u32::try_from(tolerance - debt).unwrap_or(u32::MAX);
        }
        Verdict {
            allowed: true,
            remaining,
            reset_ns: debt,
            retry_after_ns: 0,
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 500,
        rng_seed: RngSeed::Fixed(31),
        failure_persistence: None,
        // Shrinking these inputs is slow; a failure must be reported fast.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_verdict_matches_the_debt_bucket(
        interval in 1u64..5_000,
        burst in 1u64..50,
        extra in 0u64..5_000,
        gaps in prop::collection::vec(prop_oneof![Just(0u64), 0u64..20_000], 1..200),
    ) {
        // Tolerances that are not a multiple of the interval too.
        let tolerance = interval * burst + extra % interval;
        let cell = AtomicU64::new(0);
        let mut model = Bucket { tat: 0 };
        let mut now = 1_000_000u64;
        for (i, gap) in gaps.into_iter().enumerate() {
            now += gap;
            let want = model.request(now, interval, tolerance);
            prop_assert_eq!(check(&cell, now, interval, tolerance), want, "request {}", i);
            prop_assert_eq!(cell.load(Ordering::Relaxed), model.tat);
        }
    }
}

#[test]
fn the_request_that_fills_the_tolerance_exactly_passes() {
    // Interval 10, tolerance 30: three at once, the fourth refused with
    // the wait for one interval of debt to be paid.
    let cell = AtomicU64::new(0);
    for remaining in [2, 1, 0] {
        let v = check(&cell, 100, 10, 30);
        assert!(v.allowed && v.remaining == remaining, "{v:?}");
    }
    let v = check(&cell, 100, 10, 30);
    let want = Verdict {
        allowed: false,
        remaining: 0,
        reset_ns: 30,
        retry_after_ns: 10,
    };
    assert_eq!(v, want);
    assert_eq!(
        cell.load(Ordering::Relaxed),
        130,
        "a refusal changes nothing"
    );
    // 9 ns later still refused (1 ns to go), at 10 ns it passes.
    assert_eq!(check(&cell, 109, 10, 30).retry_after_ns, 1);
    assert!(check(&cell, 110, 10, 30).allowed);
}

#[test]
fn a_corrupt_tat_refuses_and_never_wraps() {
    let cell = AtomicU64::new(u64::MAX - 5);
    let v = check(&cell, 1_000, 10, 30);
    assert!(!v.allowed);
    assert_eq!(v.reset_ns, u64::MAX - 5 - 1_000);
    assert_eq!(v.retry_after_ns, u64::MAX - 1_000 - 30);
    assert_eq!(cell.load(Ordering::Relaxed), u64::MAX - 5);
}

#[test]
fn interval_zero_always_passes_and_caps_remaining() {
    let cell = AtomicU64::new(0);
    for _ in 0..3 {
        let v = check(&cell, 7, 0, u64::MAX);
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                remaining: u32::MAX,
                reset_ns: 0,
                retry_after_ns: 0
            }
        );
    }
    let v = check(&cell, 7, 0, 12);
    assert_eq!((v.allowed, v.remaining), (true, 12));
}
