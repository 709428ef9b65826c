//! The rate-limit half of the preview's traffic model: each tier's
//! histogram of per-key rates (see `edgesteer_control_api::limits`),
//! summed over the fleet into the same 5-second buckets as
//! [`crate::traffic`], for 15 minutes.
//!
//! Fleet-wide, not per proxy: a proxy's histogram holds its own keys'
//! rates (a local limit is per proxy, so adding the proxies' histograms
//! is exact for it). Only the newest bucket keeps each proxy's sums apart
//! (with the time its reports covered); when it closes, each proxy's sums
//! are scaled to its rate over the bucket's time (the proxies' mean
//! coverage) and added up, so a proxy that reported once more or less than
//! another in a bucket does not skew the fleet's rates. Bounded whatever
//! the window: [`BUCKETS`] buckets of at most [`MAX_MODEL_TIERS`] tiers
//! of at most [`RATE_BINS`] bins, plus the newest bucket's per-proxy sums
//! (at most [`MAX_REPORTERS`] proxies of at most `MAX_LIMIT_TIERS` tiers).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use edgesteer_control_api::limits::{TierUsage, RATE_BINS};
use edgesteer_control_api::report::TrafficReport;

use crate::figures::now_ms;
use crate::traffic::{BUCKETS, BUCKET_MS, MAX_REPORTERS};

/// Tiers one bucket keeps (past it, a new tier is not counted).
pub const MAX_MODEL_TIERS: usize = 256;
/// A report longer than this counts as this long (as the country model).
const MAX_INTERVAL_MS: u64 = 10_000;

/// One tier's sums: requests, refusals, and by bin (key-ms, requests).
#[derive(Clone, Debug, Default)]
struct Sums {
    requests: f64,
    refused: f64,
    bins: BTreeMap<u8, (f64, f64)>,
}

impl Sums {
    fn add(&mut self, other: &Sums, scale: f64) {
        self.requests += other.requests * scale;
        self.refused += other.refused * scale;
        for (&bin, &(key_ms, n)) in &other.bins {
            let e = self.bins.entry(bin).or_default();
            e.0 += key_ms * scale;
            e.1 += n * scale;
        }
    }

    fn add_usage(&mut self, t: &TierUsage) {
        self.requests += t.requests as f64;
        self.refused += t.refused as f64;
        for b in t.bins.iter().take(RATE_BINS) {
            let e = self.bins.entry(b.bin).or_default();
            e.0 += b.key_ms as f64;
            e.1 += b.requests as f64;
        }
    }
}

type Tiers = BTreeMap<(String, String), Sums>;

/// Adds `s` to `into`'s tier `id` (unless `into` is full of other tiers).
fn add_tier(into: &mut Tiers, id: &(String, String), s: &Sums, scale: f64) {
    if into.len() >= MAX_MODEL_TIERS && !into.contains_key(id) {
        return;
    }
    into.entry(id.clone()).or_default().add(s, scale);
}

#[derive(Debug)]
struct Bucket {
    start_ms: u64,
    /// While the bucket is the newest: each proxy's covered ms and sums.
    open: HashMap<String, (u64, Tiers)>,
    /// Once closed: the bucket's time (ms) and the proxies' sums scaled
    /// to it, added up.
    time_ms: f64,
    tiers: Tiers,
}

impl Bucket {
    /// Calls `f` with the bucket's time and each tier's fleet sums over it.
    fn each(&self, mut f: impl FnMut(&(String, String), &Sums, f64)) -> f64 {
        if self.open.is_empty() {
            for (id, s) in &self.tiers {
                f(id, s, 1.0);
            }
            return self.time_ms;
        }
        let time = self.open.values().map(|(c, _)| *c as f64).sum::<f64>() / self.open.len() as f64;
        for (covered, tiers) in self.open.values() {
            let scale = time / (*covered).max(1) as f64;
            for (id, s) in tiers {
                f(id, s, scale);
            }
        }
        time
    }

    fn close(&mut self) {
        let mut tiers = Tiers::new();
        let time = self.each(|id, s, scale| add_tier(&mut tiers, id, s, scale));
        (self.time_ms, self.tiers, self.open) = (time, tiers, HashMap::new());
    }
}

/// One tier over a window, fleet-wide: rates in requests/s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TierObserved {
    pub policy: String,
    pub tier: String,
    pub requests_per_s: f64,
    pub refused_per_s: f64,
    /// By rate bin: (keys sending in it on average, their requests/s).
    pub bins: Vec<(u8, f64, f64)>,
}

/// The fleet's recent rate-limit usage.
#[derive(Debug, Default)]
pub struct LimitModel(Mutex<VecDeque<Bucket>>);

impl LimitModel {
    /// Adds one proxy's report at `now_ms`. Every report counts for the
    /// time covered, with rate-limit usage or without.
    pub fn ingest_at(&self, proxy: &str, report: &TrafficReport, now_ms: u64) {
        let Ok(mut buckets) = self.0.lock() else {
            return;
        };
        let start_ms = now_ms - now_ms % BUCKET_MS;
        if buckets.back().is_none_or(|b| b.start_ms < start_ms) {
            if let Some(last) = buckets.back_mut() {
                last.close();
            }
            buckets.push_back(Bucket {
                start_ms,
                open: HashMap::new(),
                time_ms: 0.0,
                tiers: Tiers::new(),
            });
        }
        while buckets.len() > BUCKETS {
            buckets.pop_front();
        }
        let Some(b) = buckets.back_mut() else { return };
        if b.open.len() >= MAX_REPORTERS && !b.open.contains_key(proxy) {
            return;
        }
        let (covered, tiers) = b.open.entry(proxy.to_string()).or_default();
        *covered += report.interval_ms.clamp(1, MAX_INTERVAL_MS);
        for t in &report.limits {
            let id = (t.policy.clone(), t.tier.clone());
            if tiers.len() >= MAX_MODEL_TIERS && !tiers.contains_key(&id) {
                continue;
            }
            tiers.entry(id).or_default().add_usage(t);
        }
    }

    /// Adds one proxy's report now.
    pub fn ingest(&self, proxy: &str, report: &TrafficReport) {
        self.ingest_at(proxy, report, now_ms());
    }

    /// Every tier's rates over the last `window_ms` before `now_ms` (the
    /// buckets that start in it, as [`crate::traffic::Traffic`] takes).
    pub fn observed_at(&self, window_ms: u64, now_ms: u64) -> Vec<TierObserved> {
        let Ok(buckets) = self.0.lock() else {
            return Vec::new();
        };
        let since = now_ms.saturating_sub(window_ms);
        let since = since - since % BUCKET_MS;
        let mut time_ms = 0.0;
        let mut sums = Tiers::new();
        for b in buckets.iter().rev().take_while(|b| b.start_ms >= since) {
            time_ms += b.each(|id, s, scale| add_tier(&mut sums, id, s, scale));
        }
        if time_ms <= 0.0 {
            return Vec::new();
        }
        let secs = time_ms / 1000.0;
        sums.into_iter()
            .map(|((policy, tier), s)| TierObserved {
                policy,
                tier,
                requests_per_s: s.requests / secs,
                refused_per_s: s.refused / secs,
                bins: s
                    .bins
                    .iter()
                    .map(|(&bin, &(key_ms, n))| (bin, key_ms / time_ms, n / secs))
                    .collect(),
            })
            .collect()
    }

    /// [`LimitModel::observed_at`] now.
    pub fn observed(&self, window_ms: u64) -> Vec<TierObserved> {
        self.observed_at(window_ms, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(interval_ms: u64, keys: &[(u64, u64)]) -> TrafficReport {
        let mut t = TierUsage {
            policy: "api".into(),
            tier: "pro".into(),
            ..TierUsage::default()
        };
        for &(n, refused) in keys {
            t.add_key(n, refused, interval_ms);
        }
        TrafficReport {
            interval_ms,
            cells: Vec::new(),
            limits: vec![t],
        }
    }

    #[test]
    fn two_proxies_add_up_over_the_time_they_cover() {
        let m = LimitModel::default();
        let now = 1_000_000;
        // 10 s: p1 has a key at 20/s (4 refused) and one at 5/s; p2 one at 5/s.
        for i in 0..10 {
            m.ingest_at("p1", &report(1000, &[(20, 4), (5, 0)]), now + i * 1000);
            m.ingest_at("p2", &report(1000, &[(5, 0)]), now + i * 1000 + 300);
        }
        let o = m.observed_at(60_000, now + 10_000);
        assert_eq!(o.len(), 1);
        let t = &o[0];
        assert!((t.requests_per_s - 30.0).abs() < 1e-9, "{t:?}");
        assert!((t.refused_per_s - 4.0).abs() < 1e-9, "{t:?}");
        let keys: f64 = t.bins.iter().map(|b| b.1).sum();
        assert!((keys - 3.0).abs() < 1e-9, "{t:?}");
        // A proxy that reports one time more in a bucket (its phase) does
        // not skew the rate: p1 alone, at 20/s, 3 reports; p2 idle, 2.
        let m = LimitModel::default();
        for i in 0..3 {
            m.ingest_at("p1", &report(1000, &[(20, 0)]), now + 100 + i * 1000);
        }
        for i in 0..2 {
            m.ingest_at("p2", &report(1000, &[]), now + 900 + i * 1000);
        }
        let o = m.observed_at(5_000, now + 2_950);
        assert!((o[0].requests_per_s - 20.0).abs() < 1e-9, "{o:?}");
        let m = LimitModel::default();
        // Old buckets leave the window; memory stays bounded.
        assert!(m.observed_at(5_000, now + 60_000).is_empty());
        for i in 0..(BUCKETS as u64 * 2) {
            m.ingest_at("p1", &report(1000, &[(1, 0)]), now + i * BUCKET_MS);
        }
        assert_eq!(m.0.lock().unwrap().len(), BUCKETS);
    }
}
