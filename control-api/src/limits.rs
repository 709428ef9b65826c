//! The rate-limit half of the traffic model: what each proxy's keys sent
//! per (policy, tier), as a histogram of per-key rates, and the preview's
//! answer for each tier (projected 429s per second).
//!
//! Each second the proxy takes every active key's requests and refusals
//! from its limiter (see `edgesteer-ratelimit`'s `usage.rs`) and files the
//! key under the bin of its rate over that second: bins are a quarter
//! octave wide (each bound 19% above the last), from 1 request/s to 2^24,
//! so [`RATE_BINS`] at most per tier. A bin keeps the key-time it holds
//! (`key_ms`: one key for one 1 s report is 1000) and the requests sent.
//! Bounded: at most [`MAX_LIMIT_TIERS`] tiers per report (the busiest),
//! each at most [`RATE_BINS`] bins, whatever the number of keys.

use serde::{Deserialize, Serialize};

/// Bins per octave of rate.
pub const BINS_PER_OCTAVE: f64 = 4.0;
/// Bins of a tier: bin 0 is below 1 request/s, bin `b` >= 1 holds rates
/// in `[2^((b-1)/4), 2^(b/4))`, the last everything above.
pub const RATE_BINS: usize = 98;
/// Tiers one report carries (the busiest; the service drops the rest).
pub const MAX_LIMIT_TIERS: usize = 64;

/// The bin of a per-key rate (requests/s).
pub fn rate_bin(rate: f64) -> u8 {
    // NaN and anything below 1 request/s.
    if rate.is_nan() || rate < 1.0 {
        return 0;
    }
    let b = 1.0 + (rate.log2() * BINS_PER_OCTAVE).floor();
    b.min((RATE_BINS - 1) as f64) as u8
}

/// The rates bin `b` holds: `[low, high)`.
pub fn bin_range(b: u8) -> (f64, f64) {
    let b = usize::from(b).min(RATE_BINS - 1);
    if b == 0 {
        return (0.0, 1.0);
    }
    let low = ((b - 1) as f64 / BINS_PER_OCTAVE).exp2();
    let high = if b == RATE_BINS - 1 {
        f64::INFINITY
    } else {
        (b as f64 / BINS_PER_OCTAVE).exp2()
    };
    (low, high)
}

/// Keys of one rate bin over one report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateBin {
    pub bin: u8,
    /// Key-milliseconds: each key in the bin adds the report's interval.
    pub key_ms: u64,
    /// Requests those keys sent (allowed or refused).
    pub requests: u64,
}

/// One tier of one policy over one report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TierUsage {
    pub policy: String,
    pub tier: String,
    /// Requests of the tier's keys, and how many were refused (429).
    pub requests: u64,
    pub refused: u64,
    /// Non-zero bins, by bin.
    pub bins: Vec<RateBin>,
}

impl TierUsage {
    /// Files one key that sent `requests` (`refused` of them refused) in
    /// the last `interval_ms`.
    pub fn add_key(&mut self, requests: u64, refused: u64, interval_ms: u64) {
        let interval_ms = interval_ms.max(1);
        self.requests += requests;
        self.refused += refused;
        let bin = rate_bin(requests as f64 * 1000.0 / interval_ms as f64);
        let at = match self.bins.binary_search_by_key(&bin, |b| b.bin) {
            Ok(i) => i,
            Err(i) => {
                self.bins.insert(
                    i,
                    RateBin {
                        bin,
                        ..RateBin::default()
                    },
                );
                i
            }
        };
        if let Some(b) = self.bins.get_mut(at) {
            b.key_ms += interval_ms;
            b.requests += requests;
        }
    }
}

/// The preview's answer for one tier: its limit before and after, the
/// rate its keys send, and the 429s/s the model projects under each.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitImpact {
    pub policy: String,
    pub tier: String,
    /// Requests/s per key, and burst, in the current and the proposed
    /// table (absent where the tier is not in that table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_before: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_before: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_after: Option<u32>,
    /// Requests/s the tier's keys sent in the window, and the 429s/s the
    /// proxies answered.
    pub requests_per_s: f64,
    pub observed_429_per_s: f64,
    /// The model's 429s/s under the current and the proposed limit.
    pub before_429_per_s: f64,
    pub after_429_per_s: f64,
    /// Keys sending, on average over the window (a key counts once per
    /// proxy it uses).
    pub keys_seen: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_quarter_octaves_and_keys_land_in_their_rate() {
        assert_eq!(rate_bin(0.5), 0);
        assert_eq!(rate_bin(f64::NAN), 0);
        assert_eq!(rate_bin(1.0), 1);
        assert_eq!(rate_bin(16.0), 17);
        assert_eq!(rate_bin(1e12), (RATE_BINS - 1) as u8);
        for r in [1.0, 3.3, 10.0, 20.0, 99.9, 12345.0] {
            let (lo, hi) = bin_range(rate_bin(r));
            assert!(lo <= r && r < hi, "{r} in [{lo}, {hi})");
        }
        let mut t = TierUsage::default();
        t.add_key(20, 0, 1000);
        t.add_key(19, 0, 1000);
        t.add_key(5, 2, 1000);
        assert_eq!((t.requests, t.refused), (44, 2));
        assert_eq!(t.bins.len(), 3);
        assert!(t.bins.windows(2).all(|w| w[0].bin < w[1].bin));
        assert_eq!(t.bins.iter().map(|b| b.key_ms).sum::<u64>(), 3000);
    }
}
