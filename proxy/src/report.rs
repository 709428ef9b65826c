//! The stats reporter: a background service that sends the per-track
//! counts ([`crate::stats`]) to the config service on an interval, with
//! the impact preview's traffic model: requests by country and pin
//! ([`crate::traffic`]) and each rate-limit tier's per-key rates, taken
//! from the limiter's key state here, off the request path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edgesteer_config::route::HealthView;
use edgesteer_config::Track;
use edgesteer_control_api::api::{RegionReport, StatsReport};
use edgesteer_control_api::client::Client;
use edgesteer_control_api::limits::{TierUsage, MAX_LIMIT_TIERS};
use edgesteer_control_api::report::TrafficReport;
use edgesteer_ratelimit::Limiter;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::steer::{Snapshot, Steering};

/// Sends a report every `interval` while a config service is configured.
pub struct Reporter {
    pub steer: Arc<Steering>,
    pub client: Client,
    pub name: String,
    pub interval: Duration,
}

impl Reporter {
    /// The report of the last `interval_ms`.
    fn report(&self, interval_ms: u64) -> StatsReport {
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
            let unhealthy = r
                .backends
                .iter()
                .filter(|&&b| !snap.health.is_healthy(b))
                .map(|&b| snap.table.backend(b).key.clone())
                .collect();
            regions.insert(
                r.name.clone(),
                RegionReport {
                    stable: stats.tracks[Track::Stable.index()].take(),
                    canary: stats.tracks[Track::Canary.index()].take(),
                    canary_backends: canary.len() as u32,
                    canary_unhealthy,
                    unhealthy,
                },
            );
        }
        StatsReport {
            proxy: self.name.clone(),
            version: snap.version,
            regions,
            traffic: Some(TrafficReport {
                limits: limit_usage(&self.steer.limiter, &snap, interval_ms),
                ..self.steer.stats.traffic.take(&snap.table, interval_ms)
            }),
        }
    }
}

/// Each tier's keys since the last call, as rate histograms: the busiest
/// [`MAX_LIMIT_TIERS`] tiers.
fn limit_usage(limiter: &Limiter, snap: &Snapshot, interval_ms: u64) -> Vec<TierUsage> {
    let policies = &snap.table.rate_limits;
    let mut by_tier: BTreeMap<(usize, usize), TierUsage> = BTreeMap::new();
    limiter.take_usage(&snap.limits, |p, t, requests, refused| {
        let Some((policy, tier)) = policies.get(p).and_then(|x| Some((x, x.tiers.get(t)?))) else {
            return;
        };
        by_tier
            .entry((p, t))
            .or_insert_with(|| TierUsage {
                policy: policy.name.clone(),
                tier: tier.name.clone(),
                ..TierUsage::default()
            })
            .add_key(requests, refused, interval_ms);
    });
    let mut out: Vec<TierUsage> = by_tier.into_values().collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.requests));
    out.truncate(MAX_LIMIT_TIERS);
    out
}

#[async_trait]
impl BackgroundService for Reporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // From now on the limiter counts requests per key for the model.
        self.steer.limiter.count_usage();
        let mut tick = tokio::time::interval(self.interval);
        let mut last = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = std::time::Instant::now();
            let interval_ms = now.duration_since(last).as_millis() as u64;
            last = now;
            let report = self.report(interval_ms);
            if let Err(e) = self.client.report_stats(&report).await {
                tracing::debug!(error = %e, "stats report not delivered");
            }
        }
    }
}
