//! What proxies report to the config service every second: per region
//! and release track, requests, errors and latency buckets (the rollout
//! gates and the console are computed from these), and the traffic model
//! the impact preview runs on: requests by country and host pin.

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
    /// Requests by (country, host pin) since the previous report; absent
    /// from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficReport>,
}

/// Countries a [`TrafficReport`] names; the rest are summed as
/// [`OTHER_COUNTRY`].
pub const TOP_COUNTRIES: usize = 64;
/// Most cells one [`TrafficReport`] carries (the service drops the rest).
pub const MAX_TRAFFIC_CELLS: usize = 4096;
/// The country of requests the geo database could not place.
pub const UNKNOWN_COUNTRY: &str = "";
/// The countries outside a report's top [`TOP_COUNTRIES`], summed.
pub const OTHER_COUNTRY: &str = "other";

/// One proxy's requests since its previous report, by the inputs of the
/// routing decision that the table can change: the client's country and
/// the host pin the request met. Bounded: the top [`TOP_COUNTRIES`]
/// countries by requests, the rest summed as [`OTHER_COUNTRY`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// How long these counts took (ms since the previous report).
    pub interval_ms: u64,
    /// Non-zero cells only.
    pub cells: Vec<TrafficCell>,
    /// Rate-limit usage by (policy, tier), the busiest
    /// [`crate::limits::MAX_LIMIT_TIERS`]; absent from older proxies and
    /// when no key sent anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<crate::limits::TierUsage>,
}

/// Requests of one (country, pin) cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficCell {
    /// ISO code, [`UNKNOWN_COUNTRY`] or [`OTHER_COUNTRY`].
    pub country: String,
    /// The pinned host (as the table lists it), if the request met a pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    pub requests: u64,
}
