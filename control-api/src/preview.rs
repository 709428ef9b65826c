//! `POST /v1/preview`: what a change would do to the traffic the fleet
//! saw, before it is made. The request is the change as a write would
//! send it (a region PATCH, or a whole table); the answer is where the
//! observed traffic lands now and where it would land.

use std::collections::BTreeMap;

use edgesteer_config::TableSpec;
use serde::{Deserialize, Serialize};

use crate::api::PatchRegion;
use crate::client::{Client, ClientError, Retry};

/// Shortest window a preview may ask for (seconds).
pub const MIN_WINDOW_S: u64 = 5;
/// Longest window, and the default: what the service keeps (15 minutes).
pub const MAX_WINDOW_S: u64 = 900;

/// `POST /v1/preview`: either `table` (as `PUT /v1/table` sends it), or
/// `region` with `patch` (as `PATCH /v1/regions/{region}` sends it).
/// Nothing is ever committed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest<T = TableSpec> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchRegion>,
    /// The traffic of the last this many seconds (default and most
    /// [`MAX_WINDOW_S`], at least [`MIN_WINDOW_S`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
}

/// Traffic that changes region: `rps` requests/s from `from` to `to`
/// (`"refused"` where the request is answered 421/503 instead), `share`
/// of all modeled traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub rps: f64,
    pub share: f64,
}

/// One (country, pin) cell whose landing region changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountryMove {
    /// ISO code, or `""` for clients the geo database could not place.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    pub from: String,
    pub to: String,
    pub rps: f64,
}

/// One region before and after.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionImpact {
    pub before_rps: f64,
    pub after_rps: f64,
    pub canary_bps_before: u32,
    pub canary_bps_after: u32,
    /// Requests/s the canary track would get, before and after.
    pub canary_rps_before: f64,
    pub canary_rps_after: f64,
    /// The region's highest observed requests/s in the window (10 s
    /// points, fleet-wide), the capacity check's reference.
    pub peak_rps: f64,
    /// The region's `capacity` (requests/s) in the proposed table (else
    /// the current one), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
    /// Set when `after_rps` would pass 80% of `capacity`, or the observed
    /// peak by more than 25% (see docs/api.md); says which and by how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_warning: Option<String>,
    /// The bounds crossed: `"capacity"`, `"peak"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_bounds: Vec<String>,
}

/// Traffic the preview could not model, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unmodeled {
    pub what: String,
    pub rps: f64,
    pub why: String,
}

/// The answer of `POST /v1/preview`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The current version the change is compared with.
    pub version: u64,
    /// Seconds of traffic asked for.
    pub window_s: u64,
    /// Requests the reporting proxies counted in the window.
    pub requests_seen: u64,
    /// Proxies whose reports fall in the window.
    pub proxies: usize,
    /// Requests/s modeled (all cells but the unmodeled ones).
    pub total_rps: f64,
    pub moves: Vec<Move>,
    pub countries: Vec<CountryMove>,
    pub regions: BTreeMap<String, RegionImpact>,
    /// Requests/s that would be served outside their client's zone:
    /// 0 by construction (every candidate is inside the allowed set).
    pub zone_crossings: f64,
    /// Rate-limit tiers that sent traffic in the window or whose limit
    /// changes: 429s/s observed, and projected before and after.
    #[serde(default)]
    pub limits: Vec<crate::limits::LimitImpact>,
    pub unmodeled: Vec<Unmodeled>,
    /// How long the preview took on the service, in milliseconds.
    pub took_ms: f64,
}

impl Client {
    /// `POST /v1/preview`: what a change would do to the fleet's traffic
    /// (never commits; retried like a read).
    pub async fn preview(&self, req: &PreviewRequest) -> Result<Preview, ClientError> {
        self.call(Retry::Always, |h, b| {
            h.post(format!("{b}/v1/preview")).json(req)
        })
        .await
    }
}
