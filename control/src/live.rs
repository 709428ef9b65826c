//! What the console draws, kept as the proxies' stats arrive: per region,
//! 10-second points of requests, errors, canary requests and latency, and
//! which backends each reporting proxy holds unavailable. Bounded: 90
//! points per region, at most 10,000 reporters.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgesteer_config::explain::BackendRtt;
use edgesteer_config::route::HealthView;
use edgesteer_config::{BackendId, RegionId, RoutingTable, TableSpec};
use edgesteer_control_api::api::StatsReport;
use serde::{Deserialize, Serialize};

use crate::figures::{now_ms, Acc};

/// One chart point covers this long.
pub const POINT_MS: u64 = 10_000;
/// Points kept per region: 15 minutes.
pub const POINTS: usize = 90;
/// A proxy's health report counts for this long.
const HEALTH_FRESH: Duration = Duration::from_secs(5);
/// Proxies whose health is tracked at once; past it a new name is not.
const MAX_REPORTERS: usize = 10_000;
/// Unavailable backends kept per proxy and region.
const MAX_UNHEALTHY: usize = 1_000;

/// One 10-second point of a region, summed over the fleet (both tracks).
#[derive(Clone, Debug, Default)]
struct Point {
    start_ms: u64,
    sums: Acc,
    canary_requests: u64,
}

#[derive(Default)]
struct Inner {
    /// Region -> its points, oldest first; only regions of the table.
    series: HashMap<String, VecDeque<Point>>,
    /// Proxy -> when it last reported, and region -> unavailable backends.
    health: HashMap<String, (Instant, BTreeMap<String, Vec<String>>)>,
}

/// What the console draws from the proxies' stats.
#[derive(Default)]
pub(crate) struct Live(Mutex<Inner>);

impl Live {
    /// Adds one proxy's report (about once a second per proxy).
    pub(crate) fn ingest(&self, table: &TableSpec, report: &StatsReport) {
        let Ok(mut inner) = self.0.lock() else {
            return;
        };
        let now = now_ms();
        let start_ms = now - now % POINT_MS;
        let mut health = BTreeMap::new();
        for (region, r) in &report.regions {
            if !table.regions.contains_key(region) {
                continue;
            }
            let points = inner.series.entry(region.clone()).or_default();
            if points.back().is_none_or(|p| p.start_ms < start_ms) {
                points.push_back(Point {
                    start_ms,
                    ..Point::default()
                });
            }
            while points.len() > POINTS {
                points.pop_front();
            }
            if let Some(p) = points.back_mut() {
                p.sums.add(&r.stable);
                p.sums.add(&r.canary);
                p.canary_requests = p.canary_requests.saturating_add(r.canary.requests);
            }
            let mut unhealthy = r.unhealthy.clone();
            unhealthy.truncate(MAX_UNHEALTHY);
            health.insert(region.clone(), unhealthy);
        }
        inner
            .series
            .retain(|region, _| table.regions.contains_key(region));
        inner
            .health
            .retain(|_, (at, _)| at.elapsed() < HEALTH_FRESH);
        if inner.health.len() < MAX_REPORTERS || inner.health.contains_key(&report.proxy) {
            inner
                .health
                .insert(report.proxy.clone(), (Instant::now(), health));
        }
    }

    /// Backends any proxy reporting now holds unavailable, by region, and
    /// how many proxies report.
    pub(crate) fn unhealthy(&self) -> (BTreeMap<String, BTreeSet<String>>, usize) {
        let Ok(inner) = self.0.lock() else {
            return (BTreeMap::new(), 0);
        };
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut reporting = 0;
        for (at, regions) in inner.health.values() {
            if at.elapsed() >= HEALTH_FRESH {
                continue;
            }
            reporting += 1;
            for (region, keys) in regions {
                out.entry(region.clone())
                    .or_default()
                    .extend(keys.iter().cloned());
            }
        }
        (out, reporting)
    }

    pub(crate) fn points(&self, region: &str, since_ms: u64) -> Vec<LivePoint> {
        let Ok(inner) = self.0.lock() else {
            return Vec::new();
        };
        inner
            .series
            .get(region)
            .map(|points| {
                points
                    .iter()
                    .filter(|p| p.start_ms >= since_ms)
                    .map(|p| LivePoint {
                        at_ms: p.start_ms,
                        requests: p.sums.requests,
                        errors: p.sums.errors,
                        canary_requests: p.canary_requests,
                        p99_ms: Some(p.sums.p99_ms()).filter(|ms| *ms > 0.0 && ms.is_finite()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LivePoint {
    pub at_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub canary_requests: u64,
    /// `null` without samples, or beyond the largest latency bucket.
    pub p99_ms: Option<f64>,
}

/// The fleet's reported health as a health view (explain, preview): a
/// backend any fresh report holds unavailable is unavailable. No RTT.
pub(crate) struct FleetHealth<'a> {
    pub(crate) table: &'a RoutingTable,
    pub(crate) unhealthy: &'a BTreeMap<String, BTreeSet<String>>,
}

impl HealthView for FleetHealth<'_> {
    fn is_healthy(&self, backend: BackendId) -> bool {
        let b = self.table.backend(backend);
        let region = &self.table.region(b.region).name;
        !self
            .unhealthy
            .get(region)
            .is_some_and(|keys| keys.contains(&b.key))
    }
    fn region_rtt_us(&self, _: RegionId) -> Option<u32> {
        None
    }
}

impl BackendRtt for FleetHealth<'_> {
    fn backend_rtt_us(&self, _: BackendId) -> Option<u32> {
        None
    }
}

impl Live {
    /// Each region's highest requests/s in a 10-second point that
    /// overlaps the time since `since_ms`; the newest, unfinished point
    /// counts (over the time it has run) once it is half done, or when it
    /// is the only one.
    pub(crate) fn peaks(&self, since_ms: u64) -> BTreeMap<String, f64> {
        let Ok(inner) = self.0.lock() else {
            return BTreeMap::new();
        };
        let now = now_ms();
        inner
            .series
            .iter()
            .map(|(region, points)| {
                let rates: Vec<(u64, f64)> = points
                    .iter()
                    .filter(|p| p.start_ms + POINT_MS > since_ms)
                    .map(|p| {
                        let span = now.saturating_sub(p.start_ms).clamp(1000, POINT_MS);
                        (span, p.sums.requests as f64 * 1000.0 / span as f64)
                    })
                    .collect();
                let only = rates.len() == 1;
                let peak = rates
                    .into_iter()
                    .filter(|&(span, _)| only || span >= POINT_MS / 2)
                    .map(|(_, rps)| rps)
                    .fold(0.0, f64::max);
                (region.clone(), peak)
            })
            .collect()
    }
}
