//! GCRA (the generic cell rate algorithm) on one atomic: the cell stores its
//! theoretical arrival time (TAT) in nanoseconds on the limiter's clock.
//!
//! A request at `now` is allowed when `max(tat, now) + T - now <= tau`,
//! where `T` is the interval between requests at the sustained rate and
//! `tau = T * burst`. So `burst` requests pass at once, then one per `T`;
//! over a window `W` at most `burst + W / T` pass. A cell whose TAT is in
//! the past is indistinguishable from a fresh one, which is what makes
//! eviction of idle keys exact (see `state.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

/// The answer for one request against one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests that would still pass right now.
    pub remaining: u32,
    /// Nanoseconds until the full burst is available again.
    pub reset_ns: u64,
    /// For a refusal: nanoseconds until one request would pass.
    pub retry_after_ns: u64,
}

/// Checks and, when allowed, consumes one request.
#[inline]
pub fn check(tat: &AtomicU64, now: u64, interval: u64, tolerance: u64) -> Verdict {
    let mut cur = tat.load(Ordering::Relaxed);
    loop {
        // Saturating: a TAT near u64::MAX (a corrupt debt) refuses, never wraps.
        let new = cur.max(now).saturating_add(interval);
        let ahead = new - now;
        if ahead > tolerance {
            return Verdict {
                allowed: false,
                remaining: 0,
                reset_ns: cur.saturating_sub(now),
                retry_after_ns: ahead - tolerance,
            };
        }
        match tat.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                return Verdict {
                    allowed: true,
                    remaining: u32::try_from((tolerance - ahead) / interval.max(1))
                        .unwrap_or(u32::MAX),
                    reset_ns: ahead,
                    retry_after_ns: 0,
                }
            }
            Err(actual) => cur = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_rate() {
        // 10/s, burst 5.
        let t = 100 * MS;
        let tau = 5 * t;
        let cell = AtomicU64::new(0);
        let now = 1_000 * MS;
        let allowed = (0..20)
            .filter(|_| check(&cell, now, t, tau).allowed)
            .count();
        assert_eq!(allowed, 5);
        let v = check(&cell, now, t, tau);
        assert!(!v.allowed);
        assert_eq!(v.retry_after_ns, t);
        // One interval later exactly one more passes.
        assert!(check(&cell, now + t, t, tau).allowed);
        assert!(!check(&cell, now + t, t, tau).allowed);
    }

    #[test]
    fn window_admits_rate_times_window_plus_burst() {
        // 2x the rate for 5 s: burst + 5 s x rate pass.
        let (rate, burst) = (100u64, 20u64);
        let t = 1_000 * MS / rate;
        let cell = AtomicU64::new(0);
        let start = 10_000 * MS;
        let mut allowed = 0;
        for i in 0..(2 * rate * 5) {
            let now = start + i * t / 2;
            if check(&cell, now, t, t * burst).allowed {
                allowed += 1;
            }
        }
        assert!(
            (rate * 5 + burst - 1..=rate * 5 + burst).contains(&allowed),
            "{allowed}"
        );
    }

    #[test]
    fn remaining_and_reset_count_down() {
        let t = 10 * MS;
        let cell = AtomicU64::new(0);
        let v = check(&cell, 0, t, 3 * t);
        assert_eq!((v.remaining, v.reset_ns), (2, t));
        let v = check(&cell, 0, t, 3 * t);
        assert_eq!((v.remaining, v.reset_ns), (1, 2 * t));
    }
}
