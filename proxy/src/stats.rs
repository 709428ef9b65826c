//! Per-(region, track) request, error and latency counts that proxies
//! report to the config service, whose rollout controller judges a canary
//! by them. Counters are atomics resolved per snapshot (like the metric
//! handles), keyed by region name so they survive table versions; the
//! reporter takes deltas by swapping them to zero.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use edgesteer_config::route::HealthView;
use edgesteer_config::{RoutingTable, Track};
use edgesteer_control::client::Client;
use edgesteer_control::rollout::{RegionReport, StatsReport, TrackReport, LATENCY_BUCKETS_MS};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::steer::Steering;

#[derive(Debug, Default)]
pub struct TrackStats {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
}

impl TrackStats {
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 || status == 0 {
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

    fn take(&self) -> TrackReport {
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

/// All regions' stats by name; outlives tables.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    regions: DashMap<String, Arc<RegionStats>>,
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

/// Sends a report every `interval` while a config service is configured.
pub struct Reporter {
    pub steer: Arc<Steering>,
    pub client: Client,
    pub name: String,
    pub interval: Duration,
}

impl Reporter {
    fn report(&self) -> StatsReport {
        let snap = self.steer.current();
        let mut regions = BTreeMap::new();
        for (r, stats) in snap.table.regions.iter().zip(&snap.stats) {
            let canary: Vec<_> = r
                .backends
                .iter()
                .filter(|&&b| snap.table.backend(b).track == Track::Canary)
                .collect();
            let canary_unhealthy = canary
                .iter()
                .filter(|&&&b| !snap.health.is_healthy(b))
                .count() as u32;
            regions.insert(
                r.name.clone(),
                RegionReport {
                    stable: stats.tracks[Track::Stable.index()].take(),
                    canary: stats.tracks[Track::Canary.index()].take(),
                    canary_backends: canary.len() as u32,
                    canary_unhealthy,
                },
            );
        }
        StatsReport {
            proxy: self.name.clone(),
            version: snap.version,
            regions,
        }
    }
}

#[async_trait]
impl BackgroundService for Reporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let report = self.report();
            if let Err(e) = self.client.report_stats(&report).await {
                tracing::debug!(error = %e, "stats report not delivered");
            }
        }
    }
}
