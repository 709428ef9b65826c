#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Properties of the limiter that must hold for any traffic:
//! - over any window, admitted <= burst + rate x window (GCRA's promise);
//! - a steady sender at or under the rate is never refused;
//! - concurrent checks of one key admit exactly the burst (no lost CAS).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use edgesteer_config::ratelimit::LimitTier;
use edgesteer_ratelimit::gcra;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_more_than_burst_plus_rate_times_window(
        rate in 1u32..5_000,
        burst in 1u32..200,
        gaps in prop::collection::vec(0u64..20_000_000, 1..400),
    ) {
        let tier = LimitTier::new("t", rate, burst);
        let cell = AtomicU64::new(0);
        let mut now = 1_000_000_000u64;
        let mut admitted_at = Vec::new();
        for gap in gaps {
            now += gap;
            if gcra::check(&cell, now, tier.interval_ns, tier.tolerance_ns).allowed {
                admitted_at.push(now);
            }
        }
        // Every window [admitted_at[i], admitted_at[j]] holds j - i + 1
        // admissions, at most burst + window / interval.
        for i in 0..admitted_at.len() {
            for j in i..admitted_at.len() {
                // The promise, in the test's own arithmetic from the
                // configured rate (not the tier's derived interval).
                let window = u128::from(admitted_at[j] - admitted_at[i]);
                let max = u128::from(burst) + window * u128::from(rate) / 1_000_000_000;
                prop_assert!((j - i + 1) as u128 <= max,
                    "{} admitted in {} ns (rate {}, burst {})", j - i + 1, window, rate, burst);
            }
        }
    }

    #[test]
    fn a_sender_within_the_rate_is_never_refused(
        rate in 1u32..100_000,
        burst in 1u32..100,
        n in 1usize..500,
    ) {
        let tier = LimitTier::new("t", rate, burst);
        let cell = AtomicU64::new(0);
        // Paced at the configured rate, rounded to the slower side: one
        // request every ceil(1 s / rate).
        let pace = 1_000_000_000u64.div_ceil(u64::from(rate));
        for k in 0..n as u64 {
            let now = 1_000_000_000 + k * pace;
            prop_assert!(gcra::check(&cell, now, tier.interval_ns, tier.tolerance_ns).allowed);
        }
    }
}

#[test]
fn concurrent_checks_admit_exactly_the_burst() {
    let tier = LimitTier::new("t", 10, 1000);
    let cell = Arc::new(AtomicU64::new(0));
    let now = 5_000_000_000u64;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (cell, tier) = (cell.clone(), tier.clone());
            std::thread::spawn(move || {
                (0..1000)
                    .filter(|_| {
                        gcra::check(&cell, now, tier.interval_ns, tier.tolerance_ns).allowed
                    })
                    .count()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1000);
}

/// The case the property found (CI, session 8): at 36/s, burst 2, a sender
/// that spends its burst and then sends every floor(1 s / 36) ns got one
/// request more than the window allows, because the tier's interval was
/// rounded down. It is rounded up now.
#[test]
fn a_sender_a_nanosecond_too_fast_is_held_to_the_rate() {
    let (rate, burst) = (36u32, 2u32);
    let tier = LimitTier::new("t", rate, burst);
    let cell = AtomicU64::new(0);
    let pace = 1_000_000_000 / u64::from(rate);
    let start = 1_000_000_000u64;
    // The burst at once, then one request per `pace`.
    let times =
        std::iter::repeat_n(start, burst as usize).chain((1..200).map(|k| start + k * pace));
    let admitted_at: Vec<u64> = times
        .filter(|&now| gcra::check(&cell, now, tier.interval_ns, tier.tolerance_ns).allowed)
        .collect();
    let (first, last) = (admitted_at[0], admitted_at[admitted_at.len() - 1]);
    let window = u128::from(last - first);
    let max = u128::from(burst) + window * u128::from(rate) / 1_000_000_000;
    assert!(
        admitted_at.len() as u128 <= max,
        "{} admitted in {window} ns, at most {max}",
        admitted_at.len()
    );
}
