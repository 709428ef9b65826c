//! # edgesteer-health
//!
//! Owns what the proxy knows about backends: whether each may take
//! traffic, its smoothed RTT and its resolved address. State is keyed by the
//! backend's stable identity (its address as written, [`Backend::key`]), not
//! by its position in a table, so it survives routing-table reloads for the
//! backends that remain.
//!
//! The request path never touches the registry map: when a table is
//! installed, [`HealthRegistry::bind`] resolves each backend's shared
//! [`BackendState`] once into a [`TableHealth`] aligned with the table's
//! backend indices, and the routing decision reads plain atomics from it.
//!
//! Background work (probes, passive ejection, DNS) writes into the same
//! `BackendState`s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use edgesteer_config::model::BackendAddr;
use edgesteer_config::route::HealthView;
use edgesteer_config::{Backend, BackendId, RegionId, RoutingTable};

/// Sentinel for "no RTT measured yet".
const NO_RTT: u32 = u32::MAX;

/// Everything known about one backend, shared by every table that has it.
#[derive(Debug)]
pub struct BackendState {
    /// The identity this state belongs to.
    pub key: String,
    /// Result of active checks (true until a probe says otherwise).
    healthy: AtomicBool,
    /// Smoothed probe RTT in microseconds, `NO_RTT` until measured.
    rtt_us: AtomicU32,
    /// Where to connect: the literal address, or the latest DNS answer.
    addr: ArcSwapOption<SocketAddr>,
}

impl BackendState {
    fn new(backend: &Backend) -> Self {
        let addr = match &backend.addr {
            BackendAddr::Socket(sa) => Some(Arc::new(*sa)),
            BackendAddr::Host { .. } => None,
        };
        BackendState {
            key: backend.key.clone(),
            healthy: AtomicBool::new(true),
            rtt_us: AtomicU32::new(NO_RTT),
            addr: ArcSwapOption::new(addr),
        }
    }

    /// Whether the backend may take traffic: healthy and with an address.
    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.addr.load().is_some()
    }

    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The address to connect to, if known.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.load().as_deref().copied()
    }

    pub fn set_addr(&self, addr: Option<SocketAddr>) {
        self.addr.store(addr.map(Arc::new));
    }

    pub fn rtt_us(&self) -> Option<u32> {
        match self.rtt_us.load(Ordering::Relaxed) {
            NO_RTT => None,
            v => Some(v),
        }
    }

    /// Folds a new RTT sample into the EWMA (weight 1/4 for the new sample).
    pub fn observe_rtt_us(&self, sample: u32) {
        let sample = sample.min(NO_RTT - 1);
        let prev = self.rtt_us.load(Ordering::Relaxed);
        let next = if prev == NO_RTT {
            sample
        } else {
            ((u64::from(prev) * 3 + u64::from(sample)) / 4) as u32
        };
        self.rtt_us.store(next, Ordering::Relaxed);
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

    /// Binds a table to the registry: reuses state for backends it already
    /// knows, creates state for new ones, and forgets backends no longer
    /// named by `table` (call with the table being installed).
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
}

/// The health of one table's backends, index-aligned with
/// [`RoutingTable::backends`]. Cheap to read: one pointer chase and an atomic.
#[derive(Debug, Clone)]
pub struct TableHealth {
    backends: Vec<Arc<BackendState>>,
    /// Backend indices per region, for region RTT.
    regions: Vec<Vec<usize>>,
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
            .filter(|s| s.is_available())
            .filter_map(|s| s.rtt_us())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesteer_config::parse;

    fn table(addrs: &[&str]) -> RoutingTable {
        let backends: Vec<String> = addrs
            .iter()
            .map(|a| format!("{{ address = \"{a}\" }}"))
            .collect();
        let text = format!(
            "default_region = \"a\"\n[regions.a]\nbackends = [{}]\n",
            backends.join(", ")
        );
        edgesteer_config::compile(&parse::from_toml(&text).unwrap()).unwrap()
    }

    #[test]
    fn state_survives_reload_by_identity() {
        let reg = HealthRegistry::new();
        let t1 = table(&["127.0.0.1:1", "127.0.0.1:2"]);
        let h1 = reg.bind(&t1);
        h1.state(BackendId(1)).unwrap().set_healthy(false);
        h1.state(BackendId(1)).unwrap().observe_rtt_us(900);

        // Reordered and with a new backend: :2 keeps its state at its new index.
        let t2 = table(&["127.0.0.1:3", "127.0.0.1:2"]);
        let h2 = reg.bind(&t2);
        assert!(h2.is_healthy(BackendId(0)));
        assert!(!h2.is_healthy(BackendId(1)));
        assert_eq!(h2.state(BackendId(1)).unwrap().rtt_us(), Some(900));
        // :1 is gone from the registry.
        assert!(reg.get("127.0.0.1:1").is_none());
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn hostname_backends_need_an_address() {
        let reg = HealthRegistry::new();
        let t = table(&["origin.example:80"]);
        let h = reg.bind(&t);
        assert!(!h.is_healthy(BackendId(0)));
        h.state(BackendId(0))
            .unwrap()
            .set_addr(Some("127.0.0.1:80".parse().unwrap()));
        assert!(h.is_healthy(BackendId(0)));
    }

    #[test]
    fn region_rtt_is_the_best_available_backend() {
        let reg = HealthRegistry::new();
        let t = table(&["127.0.0.1:1", "127.0.0.1:2"]);
        let h = reg.bind(&t);
        assert_eq!(h.region_rtt_us(RegionId(0)), None);
        h.state(BackendId(0)).unwrap().observe_rtt_us(1000);
        h.state(BackendId(1)).unwrap().observe_rtt_us(400);
        assert_eq!(h.region_rtt_us(RegionId(0)), Some(400));
        h.state(BackendId(1)).unwrap().set_healthy(false);
        assert_eq!(h.region_rtt_us(RegionId(0)), Some(1000));
        // EWMA moves a quarter of the way to each new sample.
        h.state(BackendId(0)).unwrap().observe_rtt_us(2000);
        assert_eq!(h.state(BackendId(0)).unwrap().rtt_us(), Some(1250));
    }
}
