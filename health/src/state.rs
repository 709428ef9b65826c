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
//! State is per region and address: a backend listed in two regions has
//! two states, each probed with its own region's settings and ejected by
//! its own region's traffic, so one region's checks never gate the other.
//!
//! An endpoint's own fields and its probe report are in `endpoint.rs`
//! ([`Endpoint`], [`ProbeReport`], re-exported here); passive reports and
//! ejections in `eject.rs`; the `/v1/health` document in `status.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use edgesteer_config::model::{BackendAddr, HealthSettings};
use edgesteer_config::route::HealthView;
use edgesteer_config::{Backend, BackendId, RegionId, RoutingTable};

pub use crate::endpoint::{Endpoint, ProbeReport};

/// Addresses one hostname backend is probed and served at, at most.
pub const MAX_ENDPOINTS: usize = 64;

/// Milliseconds on a process-wide monotonic clock (never 0).
pub fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    ms_since(*BASE.get_or_init(Instant::now))
}

/// Milliseconds since `base`, plus one: 0 stays free to mean "never".
pub(crate) fn ms_since(base: Instant) -> u64 {
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

/// Everything known about one backend of one region, shared by every
/// table that has it.
#[derive(Debug)]
pub struct BackendState {
    /// The region this state belongs to (its name).
    pub region: String,
    /// The identity this state belongs to (the address as written).
    pub key: String,
    /// Hostname and port when the backend is named by DNS.
    pub host: Option<(String, u16)>,
    pub(crate) endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    available: AtomicBool,
    /// Serialises writes of `available` (see `Endpoint::refresh`).
    flag: Mutex<()>,
}

impl BackendState {
    /// A fresh state for `backend` of `region` (no endpoint known healthy
    /// but its literal address, if it has one).
    pub fn new(region: &str, backend: &Backend) -> Self {
        let (endpoints, host) = match &backend.addr {
            BackendAddr::Socket(sa) => (vec![Arc::new(Endpoint::new(*sa))], None),
            BackendAddr::Host { host, port } => (Vec::new(), Some((host.clone(), *port))),
        };
        let s = BackendState {
            region: region.to_string(),
            key: backend.key.clone(),
            host,
            endpoints: ArcSwap::from_pointee(endpoints),
            available: AtomicBool::new(false),
            flag: Mutex::new(()),
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

    /// An available endpoint not in `avoid`, rotating by `hash` (a retry
    /// stays on this backend only when it has one).
    pub fn pick_available(&self, hash: u64, avoid: &[SocketAddr]) -> Option<SocketAddr> {
        let eps = self.endpoints.load();
        let n = eps.len().max(1);
        let start = (hash % n as u64) as usize;
        (0..eps.len())
            .filter_map(|i| eps.get((start + i) % n))
            .find(|ep| ep.is_available() && !avoid.contains(&ep.addr))
            .map(|ep| ep.addr)
    }

    pub fn endpoint(&self, addr: SocketAddr) -> Option<Arc<Endpoint>> {
        self.endpoints
            .load()
            .iter()
            .find(|e| e.addr == addr)
            .cloned()
    }

    /// Replaces the resolved addresses, keeping the state of those that
    /// remain. At most [`MAX_ENDPOINTS`] are kept (the first, in the order
    /// given), which bounds a backend's probe fan-out. The first answer's
    /// addresses serve at once, as a static backend's do; an address that
    /// joins later waits for its probes ([`Endpoint::pending`]).
    pub fn set_addrs(&self, addrs: &[SocketAddr]) -> bool {
        if addrs.len() > MAX_ENDPOINTS {
            tracing::warn!(backend = %self.key, resolved = addrs.len(), kept = MAX_ENDPOINTS, "backend's name resolves to more addresses than are probed; the first ones are kept");
        }
        let addrs = &addrs[..addrs.len().min(MAX_ENDPOINTS)];
        let cur = self.endpoints.load_full();
        let same = cur.len() == addrs.len() && cur.iter().zip(addrs).all(|(e, a)| e.addr == *a);
        if same {
            return false;
        }
        // A new address waits for its probes only while an address this
        // backend keeps can take the traffic. An answer that changed whole
        // (rotating load balancer addresses), or whose kept addresses are
        // down, starts as a first answer does: serving, until a probe or a
        // passive check says otherwise. Holding all of them back took the
        // backend out at every such re-resolution.
        let kept_serves = cur
            .iter()
            .any(|e| e.is_available() && addrs.contains(&e.addr));
        let next: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|a| {
                cur.iter()
                    .find(|e| e.addr == *a)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(if kept_serves {
                            Endpoint::pending(*a)
                        } else {
                            Endpoint::new(*a)
                        })
                    })
            })
            .collect();
        self.endpoints.store(Arc::new(next));
        self.recompute();
        true
    }

    /// Re-derives the backend summary from its endpoints.
    pub fn recompute(&self) {
        let _guard = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        let any = self.endpoints.load().iter().any(|e| e.is_available());
        self.available.store(any, Ordering::SeqCst);
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

/// All backend states by region and identity; outlives tables.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    states: DashMap<(String, String), Arc<BackendState>>,
    /// Held while an ejection starts or ends (the cold path), so the
    /// region cap check and the ejection are one step.
    pub(crate) eject_lock: Arc<Mutex<()>>,
}

impl HealthRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds a table: reuses the state of (region, backend) pairs it
    /// already knows, creates state for new ones, forgets those the table
    /// no longer has.
    pub fn bind(&self, table: &RoutingTable) -> TableHealth {
        let name = |b: &Backend| table.region(b.region).name.clone();
        let backends: Vec<Arc<BackendState>> = table
            .backends
            .iter()
            .map(|b| {
                let region = name(b);
                self.states
                    .entry((region.clone(), b.key.clone()))
                    .or_insert_with(|| Arc::new(BackendState::new(&region, b)))
                    .clone()
            })
            .collect();
        let live: std::collections::HashSet<(String, String)> = table
            .backends
            .iter()
            .map(|b| (name(b), b.key.clone()))
            .collect();
        self.states.retain(|k, _| live.contains(k));
        let regions = table
            .regions
            .iter()
            .map(|r| r.backends.iter().map(|b| b.index()).collect())
            .collect();
        TableHealth {
            backends,
            regions,
            eject_lock: self.eject_lock.clone(),
        }
    }

    /// The state of backend `key` in `region`.
    pub fn get(&self, region: &str, key: &str) -> Option<Arc<BackendState>> {
        self.states
            .get(&(region.to_string(), key.to_string()))
            .map(|s| s.clone())
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
                    let _guard = self.eject_lock.lock().unwrap_or_else(|p| p.into_inner());
                    // An ejection may have started since the load.
                    if ep.ejected_until_ms.load(Ordering::SeqCst) != until {
                        continue;
                    }
                    ep.ejected_until_ms.store(0, Ordering::SeqCst);
                    ep.ejection_ended_ms.store(now, Ordering::SeqCst);
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
    pub(crate) backends: Vec<Arc<BackendState>>,
    /// Backend indices per region.
    pub(crate) regions: Vec<Vec<usize>>,
    /// The registry's ejection lock.
    pub(crate) eject_lock: Arc<Mutex<()>>,
}

impl TableHealth {
    pub fn state(&self, id: BackendId) -> Option<&Arc<BackendState>> {
        self.backends.get(id.index())
    }

    pub fn states(&self) -> &[Arc<BackendState>] {
        &self.backends
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
