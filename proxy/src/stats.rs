//! Per-(region, track) request, error and latency counts that proxies
//! report to the config service, whose rollout controller judges a canary
//! by them. Counters are atomics resolved per snapshot (like the metric
//! handles), keyed by region name so they survive table versions; the
//! reporter (`report.rs`) takes deltas by swapping them to zero.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use edgesteer_config::RoutingTable;
use edgesteer_control_api::api::{TrackReport, LATENCY_BUCKETS_MS};

#[derive(Debug, Default)]
pub struct TrackStats {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
}

impl TrackStats {
    /// One request: its status (0 when the client left before an answer,
    /// which is not the backend's error) and the upstream's time to the
    /// response head (not the client's upload or download time).
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts since the last call, resetting them.
    pub fn take(&self) -> TrackReport {
        TrackReport {
            requests: self.requests.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.swap(0, Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Both tracks of one region.
#[derive(Debug, Default)]
pub struct RegionStats {
    pub tracks: [TrackStats; 2],
}

/// All regions' stats by name, and the traffic model's counts by pin;
/// outlives tables.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    regions: DashMap<String, Arc<RegionStats>>,
    pub traffic: crate::traffic::TrafficRegistry,
}

impl StatsRegistry {
    /// Handles for every region of `table`, index-aligned.
    pub fn for_table(&self, table: &RoutingTable) -> Vec<Arc<RegionStats>> {
        table
            .regions
            .iter()
            .map(|r| self.regions.entry(r.name.clone()).or_default().clone())
            .collect()
    }
}
