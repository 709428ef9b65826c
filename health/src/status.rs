//! The `/v1/health` document: per region, each backend's availability and
//! each endpoint's state, reason, streaks, ejection and RTT.

use std::sync::atomic::Ordering;

use edgesteer_config::route::HealthView;
use edgesteer_config::RoutingTable;
use serde::Serialize;

use crate::endpoint::ProbeReport;
use crate::state::{now_ms, TableHealth};

impl TableHealth {
    /// The `/v1/health` document.
    pub fn status(&self, table: &RoutingTable) -> HealthStatus {
        self.status_at(table, now_ms())
    }

    /// [`TableHealth::status`] as of `now` (ms on the health clock): the
    /// time left in each ejection is counted from it.
    pub fn status_at(&self, table: &RoutingTable, now: u64) -> HealthStatus {
        let regions = table
            .regions
            .iter()
            .map(|r| {
                let backends: Vec<BackendStatus> = r
                    .backends
                    .iter()
                    .filter_map(|&b| Some((table.backend(b), self.state(b)?)))
                    .map(|(b, s)| BackendStatus {
                        backend: b.key.clone(),
                        track: b.track.as_str(),
                        weight: b.weight,
                        available: s.is_available(),
                        endpoints: s
                            .endpoints()
                            .iter()
                            .map(|e| {
                                let until = e.ejected_until_ms.load(Ordering::Relaxed);
                                let (last_probe, eject_cause) = e
                                    .with_detail(|d| (d.last_probe.clone(), d.eject_cause.clone()));
                                let state = match (e.is_active_healthy(), until != 0) {
                                    (_, true) => "ejected",
                                    (true, false) => "healthy",
                                    (false, false) => "unhealthy",
                                };
                                let reason = if until != 0 {
                                    eject_cause.clone().unwrap_or_default()
                                } else {
                                    last_probe
                                        .as_ref()
                                        .map(|p| p.detail.clone())
                                        .unwrap_or_else(|| "no probe yet".into())
                                };
                                EndpointStatus {
                                    addr: e.addr.to_string(),
                                    state,
                                    reason,
                                    available: e.is_available(),
                                    consecutive_ok: e.consecutive_ok.load(Ordering::Relaxed),
                                    consecutive_fail: e.consecutive_fail.load(Ordering::Relaxed),
                                    passive_failures: e.passive_failures.load(Ordering::Relaxed),
                                    passive_5xx: e.passive_5xx.load(Ordering::Relaxed),
                                    ejections: e.ejections.load(Ordering::Relaxed),
                                    ejected_for_ms: until.saturating_sub(now),
                                    rtt_ms: e.rtt_us().map(|u| f64::from(u) / 1000.0),
                                    last_probe,
                                }
                            })
                            .collect(),
                    })
                    .collect();
                RegionStatus {
                    region: r.name.clone(),
                    zone: r.zone.map(|z| table.zone(z).name.clone()),
                    healthy: backends.iter().any(|b| b.available),
                    rtt_ms: self.region_rtt_us(r.id).map(|u| f64::from(u) / 1000.0),
                    backends,
                }
            })
            .collect();
        HealthStatus { regions }
    }
}

#[derive(Debug, Serialize)]
pub struct HealthStatus {
    pub regions: Vec<RegionStatus>,
}

#[derive(Debug, Serialize)]
pub struct RegionStatus {
    pub region: String,
    pub zone: Option<String>,
    pub healthy: bool,
    pub rtt_ms: Option<f64>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub backend: String,
    pub track: &'static str,
    pub weight: u32,
    pub available: bool,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Serialize)]
pub struct EndpointStatus {
    pub addr: String,
    /// healthy, unhealthy (active checks) or ejected (passive).
    pub state: &'static str,
    /// Last probe result or ejection cause.
    pub reason: String,
    pub available: bool,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub passive_failures: u32,
    pub passive_5xx: u32,
    pub ejections: u32,
    pub ejected_for_ms: u64,
    pub rtt_ms: Option<f64>,
    pub last_probe: Option<ProbeReport>,
}
