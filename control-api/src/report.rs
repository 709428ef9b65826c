//! What proxies report to the config service every second: per region
//! and release track, requests, errors and latency buckets. The rollout
//! gates and the console are computed from these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds (ms) of the latency buckets in a [`TrackReport`]; one
/// more bucket counts everything slower.
pub const LATENCY_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// One track's figures in a [`StatsReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackReport {
    pub requests: u64,
    pub errors: u64,
    /// Counts per latency bucket (see [`LATENCY_BUCKETS_MS`]).
    pub buckets: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionReport {
    pub stable: TrackReport,
    pub canary: TrackReport,
    pub canary_backends: u32,
    pub canary_unhealthy: u32,
    /// Backends (their table keys) this proxy holds unavailable now, by
    /// active or passive checks; what the console's region states and its
    /// explain are drawn from. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
}

/// `POST /v1/stats`: what one proxy saw since its previous report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub proxy: String,
    pub version: u64,
    pub regions: BTreeMap<String, RegionReport>,
}
