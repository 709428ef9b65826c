//! The per-key word of the traffic model's counts (see `usage.rs`):
//! `tier + 1 (8 bits) << 56 | refused (28) << 28 | requests (28)`, added
//! to on the request path and taken by the reporter.

use std::sync::atomic::{AtomicU64, Ordering};

const COUNT_MASK: u64 = (1 << 28) - 1;
const REFUSED_SHIFT: u32 = 28;
const TIER_SHIFT: u32 = 56;
const TIER_MASK: u64 = 0xff << TIER_SHIFT;

/// Counts one request of tier `tier` (when counting), refused unless
/// `allowed`.
#[inline]
pub(crate) fn tally(word: &AtomicU64, tier: Option<usize>, allowed: bool) {
    let Some(tier) = tier else { return };
    let prev = word.fetch_add(
        1 | (u64::from(!allowed) << REFUSED_SHIFT),
        Ordering::Relaxed,
    );
    let tag = ((tier as u64 + 1) & 0xff) << TIER_SHIFT;
    if prev & TIER_MASK != tag {
        // First count of this key, or the key moved tiers.
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            Some((w & !TIER_MASK) | tag)
        });
    }
}

/// Whether the reporter has taken every count (the cell may be evicted).
#[inline]
pub(crate) fn taken(word: &AtomicU64) -> bool {
    word.load(Ordering::Relaxed) & !TIER_MASK == 0
}

/// A key's `(tier, requests, refused)` since the last take, resetting
/// the counts (the tier stays).
pub(crate) fn take(word: &AtomicU64) -> Option<(usize, u64, u64)> {
    if taken(word) {
        return None;
    }
    let w = word.fetch_and(TIER_MASK, Ordering::Relaxed);
    let tier = (w >> TIER_SHIFT) as usize;
    let requests = w & COUNT_MASK;
    let refused = (w >> REFUSED_SHIFT) & COUNT_MASK;
    (tier > 0 && requests > 0).then(|| (tier - 1, requests, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_taken_once_under_the_last_tier_used() {
        let w = AtomicU64::new(0);
        assert!(taken(&w) && take(&w).is_none());
        tally(&w, Some(0), true);
        tally(&w, Some(0), false);
        tally(&w, None, false);
        assert!(!taken(&w));
        assert_eq!(take(&w), Some((0, 2, 1)));
        assert!(taken(&w));
        assert_eq!(take(&w), None);
        // The key moved tiers between two takes: its counts go under the
        // tier it has now.
        tally(&w, Some(0), true);
        tally(&w, Some(3), false);
        assert_eq!(take(&w), Some((3, 2, 1)));
        tally(&w, Some(254), true);
        assert_eq!(take(&w), Some((254, 1, 0)));
    }
}
