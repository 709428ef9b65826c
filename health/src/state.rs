//! Backend and endpoint state, shared across table versions.
//!
//! A *backend* is a table entry (`address = "host:port"`); an *endpoint* is
//! one resolved socket address of it (a literal address has exactly one, a
//! hostname as many as DNS returns). Probes and passive detection act on
//! endpoints; routing asks whether a backend has any endpoint available.
//!
//! Writers (probes, passive reports, DNS, the ejection sweep) keep an
//! `available` summary flag current, so the request path reads one atomic
//! per backend and never a clock or a lock.
//!
//! An endpoint's own fields and its probe report are in `endpoint.rs`
//! ([`Endpoint`], [`ProbeReport`], re-exported here).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use edgesteer_config::model::{BackendAddr, HealthSettings, OutlierSettings};
use edgesteer_config::route::HealthView;
use edgesteer_config::{Backend, BackendId, RegionId, RoutingTable};
use serde::Serialize;

pub use crate::endpoint::{Endpoint, ProbeReport};

/// Milliseconds on a process-wide monotonic clock (never 0).
pub fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = BASE.get_or_init(Instant::now);
    base.elapsed().as_millis() as u64 + 1
}

/// What a live request learned about an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The TCP (or TLS) connection could not be made.
    ConnectFailure,
    /// The connection broke or timed out before a response.
    Reset,
    /// A response arrived with this status.
    Status(u16),
}

/// Everything known about one backend, shared by every table that has it.
#[derive(Debug)]
pub struct BackendState {
    /// The identity this state belongs to (the address as written).
    pub key: String,
    /// Hostname and port when the backend is named by DNS.
    pub host: Option<(String, u16)>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    available: AtomicBool,
}

impl BackendState {
    fn new(backend: &Backend) -> Self {
        let (endpoints, host) = match &backend.addr {
            BackendAddr::Socket(sa) => (vec![Arc::new(Endpoint::new(*sa))], None),
            BackendAddr::Host { host, port } => (Vec::new(), Some((host.clone(), *port))),
        };
        let s = BackendState {
            key: backend.key.clone(),
            host,
            endpoints: ArcSwap::from_pointee(endpoints),
            available: AtomicBool::new(false),
        };
        s.recompute();
        s
    }

    /// Whether any endpoint may take traffic.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// An available endpoint, rotating by `hash`, skipping `avoid`; if none
    /// is available, any endpoint not avoided (the caller has decided to try).
    pub fn pick(&self, hash: u64, avoid: &[SocketAddr]) -> Option<SocketAddr> {
        let eps = self.endpoints.load();
        let n = eps.len();
        if n == 0 {
            return None;
        }
        let start = (hash % n as u64) as usize;
        let ordered = (0..n).filter_map(|i| eps.get((start + i) % n));
        let mut fallback = None;
        for ep in ordered {
            if avoid.contains(&ep.addr) {
                continue;
            }
            if ep.is_available() {
                return Some(ep.addr);
            }
            fallback.get_or_insert(ep.addr);
        }
        fallback
    }

    pub fn endpoint(&self, addr: SocketAddr) -> Option<Arc<Endpoint>> {
        self.endpoints
            .load()
            .iter()
            .find(|e| e.addr == addr)
            .cloned()
    }

    /// Replaces the resolved addresses, keeping the state of those that remain.
    pub fn set_addrs(&self, addrs: &[SocketAddr]) -> bool {
        let cur = self.endpoints.load_full();
        let same = cur.len() == addrs.len() && cur.iter().zip(addrs).all(|(e, a)| e.addr == *a);
        if same {
            return false;
        }
        let next: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|a| {
                cur.iter()
                    .find(|e| e.addr == *a)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*a)))
            })
            .collect();
        self.endpoints.store(Arc::new(next));
        self.recompute();
        true
    }

    /// Re-derives the backend summary from its endpoints.
    pub fn recompute(&self) {
        let any = self.endpoints.load().iter().any(|e| e.is_available());
        self.available.store(any, Ordering::Relaxed);
    }

    /// Best smoothed RTT among available endpoints.
    pub fn rtt_us(&self) -> Option<u32> {
        self.endpoints
            .load()
            .iter()
            .filter(|e| e.is_available())
            .filter_map(|e| e.rtt_us())
            .min()
    }

    /// Records an active probe result; returns the new state when it changed.
    pub fn record_probe(
        &self,
        ep: &Endpoint,
        report: ProbeReport,
        settings: &HealthSettings,
    ) -> Option<bool> {
        let ok = report.ok;
        if let Some(rtt) = report.rtt_us.filter(|_| ok) {
            ep.observe_rtt_us(rtt);
        }
        let changed = if ok {
            ep.consecutive_fail.store(0, Ordering::Relaxed);
            let n = ep.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            (!ep.is_active_healthy() && n >= settings.healthy_after).then_some(true)
        } else {
            ep.consecutive_ok.store(0, Ordering::Relaxed);
            let n = ep.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
            (ep.is_active_healthy() && n >= settings.unhealthy_after).then_some(false)
        };
        if let Some(healthy) = changed {
            ep.active_healthy.store(healthy, Ordering::Relaxed);
            ep.refresh();
            self.recompute();
            if healthy {
                tracing::info!(backend = %self.key, endpoint = %ep.addr, probe = %report.detail, "backend healthy again (active checks)");
            } else {
                tracing::warn!(backend = %self.key, endpoint = %ep.addr, probe = %report.detail, "backend unhealthy (active checks)");
            }
        }
        ep.with_detail(|d| d.last_probe = Some(report));
        changed
    }
}

/// All backend states by identity; outlives tables.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    states: DashMap<String, Arc<BackendState>>,
}

impl HealthRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds a table: reuses the state of backends it already knows,
    /// creates state for new ones, forgets backends the table no longer has.
    pub fn bind(&self, table: &RoutingTable) -> TableHealth {
        let backends: Vec<Arc<BackendState>> = table
            .backends
            .iter()
            .map(|b| {
                self.states
                    .entry(b.key.clone())
                    .or_insert_with(|| Arc::new(BackendState::new(b)))
                    .clone()
            })
            .collect();
        let live: std::collections::HashSet<&str> =
            table.backends.iter().map(|b| b.key.as_str()).collect();
        self.states.retain(|k, _| live.contains(k.as_str()));
        let regions = table
            .regions
            .iter()
            .map(|r| r.backends.iter().map(|b| b.index()).collect())
            .collect();
        TableHealth { backends, regions }
    }

    pub fn get(&self, key: &str) -> Option<Arc<BackendState>> {
        self.states.get(key).map(|s| s.clone())
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Lets ejected endpoints back once their cool-down has passed.
    pub fn sweep(&self, now: u64) {
        for s in self.states.iter() {
            let mut changed = false;
            for ep in s.endpoints.load().iter() {
                let until = ep.ejected_until_ms.load(Ordering::Relaxed);
                if until != 0 && now >= until {
                    ep.ejected_until_ms.store(0, Ordering::Relaxed);
                    ep.refresh();
                    changed = true;
                    tracing::info!(backend = %s.key, endpoint = %ep.addr, "ejection over; backend back in rotation");
                }
            }
            if changed {
                s.recompute();
            }
        }
    }
}

/// The health of one table's backends, index-aligned with
/// [`RoutingTable::backends`].
#[derive(Debug, Clone)]
pub struct TableHealth {
    backends: Vec<Arc<BackendState>>,
    /// Backend indices per region.
    regions: Vec<Vec<usize>>,
}

impl TableHealth {
    pub fn state(&self, id: BackendId) -> Option<&Arc<BackendState>> {
        self.backends.get(id.index())
    }

    pub fn states(&self) -> &[Arc<BackendState>] {
        &self.backends
    }

    /// Feeds the outcome of a live request into passive outlier detection.
    /// Returns true when this report ejected the endpoint.
    pub fn report(
        &self,
        backend: BackendId,
        addr: SocketAddr,
        outcome: Outcome,
        settings: &OutlierSettings,
        region: RegionId,
    ) -> bool {
        let Some(state) = self.state(backend) else {
            return false;
        };
        let Some(ep) = state.endpoint(addr) else {
            return false;
        };
        let (counter, threshold, cause) = match outcome {
            Outcome::Status(s) if s < 500 => {
                // Cleared only when set: a store on every success would
                // take the cache line from every other thread serving
                // this endpoint.
                for streak in [&ep.passive_failures, &ep.passive_5xx] {
                    if streak.load(Ordering::Relaxed) != 0 {
                        streak.store(0, Ordering::Relaxed);
                    }
                }
                return false;
            }
            Outcome::Status(_) => (
                &ep.passive_5xx,
                settings.consecutive_5xx,
                "consecutive 5xx responses",
            ),
            Outcome::ConnectFailure => (
                &ep.passive_failures,
                settings.consecutive_failures,
                "consecutive connect failures",
            ),
            Outcome::Reset => (
                &ep.passive_failures,
                settings.consecutive_failures,
                "consecutive resets or timeouts",
            ),
        };
        if threshold == 0 {
            return false;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n < threshold || ep.is_ejected() {
            return false;
        }
        // Envoy's max ejection percent: never let passive signals alone
        // take more than this share of a region's endpoints out.
        let (total, ejected) = self.region_endpoint_counts(region);
        if (ejected + 1) * 100 > total * settings.max_ejection_percent as usize {
            tracing::debug!(backend = %state.key, endpoint = %addr, ejected, total, "ejection skipped: region at its max ejection percent");
            return false;
        }
        let k = ep.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let dur = settings
            .base_ejection
            .saturating_mul(k)
            .min(settings.max_ejection);
        ep.ejected_until_ms
            .store(now_ms() + dur.as_millis() as u64, Ordering::Relaxed);
        counter.store(0, Ordering::Relaxed);
        ep.refresh();
        state.recompute();
        let why = format!("{n} {cause}");
        tracing::warn!(backend = %state.key, endpoint = %addr, cause = %why, ejection = k, cool_down = ?dur, "backend ejected (passive)");
        ep.with_detail(|d| d.eject_cause = Some(why));
        true
    }

    fn region_endpoint_counts(&self, region: RegionId) -> (usize, usize) {
        let mut total = 0;
        let mut ejected = 0;
        for &i in self
            .regions
            .get(region.index())
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(s) = self.backends.get(i) {
                for ep in s.endpoints.load().iter() {
                    total += 1;
                    ejected += usize::from(ep.is_ejected());
                }
            }
        }
        (total, ejected)
    }

    /// The `/v1/health` document.
    pub fn status(&self, table: &RoutingTable) -> HealthStatus {
        let now = now_ms();
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

impl HealthView for TableHealth {
    fn is_healthy(&self, backend: BackendId) -> bool {
        self.backends
            .get(backend.index())
            .is_some_and(|s| s.is_available())
    }

    fn region_rtt_us(&self, region: RegionId) -> Option<u32> {
        self.regions
            .get(region.index())?
            .iter()
            .filter_map(|&i| self.backends.get(i))
            .filter_map(|s| s.rtt_us())
            .min()
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
