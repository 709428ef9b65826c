//! The shared steering state: one `ArcSwap<Snapshot>` that every request
//! loads once, plus the long-lived pieces that outlive tables (geo database,
//! health registry, metrics).
//!
//! A [`Snapshot`] bundles everything a request needs from one table version
//! (the compiled table, its health binding, pre-built header values and
//! metric handles), so one atomic load gives a consistent view and retries
//! of a request see the same version even if a new table lands meanwhile.

use std::sync::Arc;

use arc_swap::ArcSwap;
use edgesteer_config::{RoutingTable, TableSpec};
use edgesteer_geo::GeoDb;
use edgesteer_health::{HealthRegistry, TableHealth};
use http::HeaderValue;

use crate::metrics::{Metrics, RegionMetrics};

/// One routing-table version and everything derived from it.
pub struct Snapshot {
    pub version: u64,
    pub spec: Arc<TableSpec>,
    pub table: RoutingTable,
    pub health: TableHealth,
    /// `X-Steer-Region` values, by region index.
    pub region_header: Vec<HeaderValue>,
    /// `X-Steer-Version` value.
    pub version_header: HeaderValue,
    /// Metric handles by region index; the extra last one is for "none".
    pub metrics: Vec<RegionMetrics>,
    /// Rollout stats by region index.
    pub stats: Vec<Arc<crate::stats::RegionStats>>,
    /// Requests by (pin, country), for the impact preview.
    pub traffic: crate::traffic::TableTraffic,
    /// Rate-limit policies bound to their long-lived state.
    pub limits: edgesteer_ratelimit::Bound,
    /// `edgesteer_rate_limited_total{policy,tier}` by `[policy][tier]`.
    pub rate_limited: Vec<Vec<prometheus::IntCounter>>,
    /// `edgesteer_ratelimit_store_refusals_total{policy}` by policy index.
    pub store_refusals: Vec<prometheus::IntCounter>,
    /// How each region's origins are reached, by region index.
    pub upstream: Vec<Arc<crate::origin::RegionUpstream>>,
    /// Each backend's host as a TLS server name (hostname or IP), by
    /// backend index: made once here, not per attempt.
    pub backend_hosts: Vec<String>,
}

impl Snapshot {
    pub fn region_metrics(&self, region: Option<usize>) -> Option<&RegionMetrics> {
        match region {
            Some(i) => self.metrics.get(i),
            None => self.metrics.last(),
        }
    }
}

/// State shared by the data plane, the admin API and background tasks.
pub struct Steering {
    current: ArcSwap<Snapshot>,
    /// Held while a table is built and stored, so a certificate reload
    /// (`install_over`) never builds over a version going live.
    installing: std::sync::Mutex<()>,
    pub geo: Arc<GeoDb>,
    pub registry: HealthRegistry,
    /// Rate-limit state; outlives tables like the health registry.
    pub limiter: Arc<edgesteer_ratelimit::Limiter>,
    pub metrics: Arc<Metrics>,
    pub stats: crate::stats::StatsRegistry,
    /// Record Prometheus request metrics (off only to measure their cost).
    pub record_metrics: bool,
    /// The edge checks (head deadline, framing and size checks, per-request
    /// downstream limits); off only with `--unsafe-no-edge-checks`, to price
    /// them in a benchmark.
    pub edge_checks: bool,
    /// Where access-log lines go when a table turns logging on.
    pub access_log: Option<crate::access_log::AccessLog>,
    /// Retries in flight across the proxy (the retry budget's count).
    pub retries_active: std::sync::atomic::AtomicI64,
    /// Tokens for the admin listener's writes (lifting and adding blocks);
    /// empty = writes open to whoever reaches the listener.
    pub admin_tokens: Vec<edgesteer_control_api::Token>,
}

impl Steering {
    pub fn new(
        version: u64,
        spec: TableSpec,
        table: RoutingTable,
        geo: Arc<GeoDb>,
        metrics: Arc<Metrics>,
    ) -> Steering {
        let registry = HealthRegistry::new();
        let limiter = Arc::new(edgesteer_ratelimit::Limiter::new());
        let stats = crate::stats::StatsRegistry::default();
        let first = build_snapshot(version, spec, table, &registry, &limiter, &metrics, &stats);
        metrics.table_version.set(version as i64);
        Steering {
            current: ArcSwap::from_pointee(first),
            installing: std::sync::Mutex::new(()),
            geo,
            registry,
            limiter,
            metrics,
            stats,
            record_metrics: true,
            edge_checks: true,
            access_log: None,
            retries_active: std::sync::atomic::AtomicI64::new(0),
            admin_tokens: Vec::new(),
        }
    }

    /// The snapshot new requests use.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot for a short look (a few fields copied out),
    /// without touching its reference count, which every thread shares.
    /// Not to be held across an `.await`.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The snapshot of a compiled table: binds health and limiter state to
    /// it. Called under the install lock, for a table that goes live.
    fn snapshot(&self, version: u64, spec: TableSpec, table: RoutingTable) -> Arc<Snapshot> {
        Arc::new(build_snapshot(
            version,
            spec,
            table,
            &self.registry,
            &self.limiter,
            &self.metrics,
            &self.stats,
        ))
    }

    /// [`Steering::install`] of a table recompiled from `over`'s spec,
    /// only while `over` is still the live snapshot: false (nothing
    /// installed) when another version went live meanwhile.
    pub fn install_over(&self, over: &Arc<Snapshot>, spec: TableSpec, table: RoutingTable) -> bool {
        // Under the install lock, checked before the snapshot is built: a
        // build binds health and limiter state to its table, which must not
        // happen for one that will not go live.
        let _installing = self.installing.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&self.current.load(), over) {
            tracing::debug!(
                version = over.version,
                "a recompiled table was not installed: another version went live meanwhile"
            );
            return false;
        }
        self.current.store(self.snapshot(over.version, spec, table));
        tracing::info!(
            version = over.version,
            "routing table reinstalled (origin certificates reloaded)"
        );
        true
    }

    /// Installs a compiled table as the new live version. In-flight
    /// requests keep the snapshot they loaded.
    pub fn install(&self, version: u64, spec: TableSpec, table: RoutingTable) -> Arc<Snapshot> {
        let _installing = self.installing.lock().unwrap_or_else(|e| e.into_inner());
        let snap = self.snapshot(version, spec, table);
        self.current.store(snap.clone());
        self.limiter.warn_if_unsynced(&snap.table.rate_limits);
        self.metrics.table_version.set(version as i64);
        self.metrics
            .table_applies
            .with_label_values(&["applied"])
            .inc();
        tracing::info!(
            version,
            regions = snap.table.regions.len(),
            backends = snap.table.backends.len(),
            "routing table installed"
        );
        snap
    }
}

fn build_snapshot(
    version: u64,
    spec: TableSpec,
    table: RoutingTable,
    registry: &HealthRegistry,
    limiter: &edgesteer_ratelimit::Limiter,
    metrics: &Metrics,
    stats: &crate::stats::StatsRegistry,
) -> Snapshot {
    let health = registry.bind(&table);
    let limits = limiter.bind(&table.rate_limits);
    let rate_limited = metrics.for_rate_limits(&table);
    let store_refusals = metrics.for_store_refusals(&table);
    let region_header = table
        .regions
        .iter()
        .map(|r| HeaderValue::from_str(&r.name).unwrap_or(HeaderValue::from_static("invalid")))
        .collect();
    let version_header = HeaderValue::from(version);
    metrics.set_rollouts(&table);
    metrics.preinit(&table);
    let traffic = stats.traffic.for_table(&table);
    let stats = stats.for_table(&table);
    let metrics = metrics.for_table(&table);
    // Regions sharing the table-wide settings share one prepared copy.
    let mut prepared: Vec<(
        *const edgesteer_config::model::UpstreamSettings,
        Arc<crate::origin::RegionUpstream>,
    )> = Vec::new();
    let upstream = table
        .regions
        .iter()
        .map(|r| {
            let key = Arc::as_ptr(&r.upstream);
            if let Some((_, u)) = prepared.iter().find(|(k, _)| *k == key) {
                return u.clone();
            }
            let u = Arc::new(crate::origin::RegionUpstream::new(&r.upstream));
            prepared.push((key, u.clone()));
            u
        })
        .collect();
    let backend_hosts = table
        .backends
        .iter()
        .map(|b| crate::origin::backend_host(&b.addr))
        .collect();
    Snapshot {
        version,
        spec: Arc::new(spec),
        table,
        health,
        region_header,
        version_header,
        metrics,
        stats,
        traffic,
        limits,
        rate_limited,
        store_refusals,
        upstream,
        backend_hosts,
    }
}

/// A `Steering` on the bundled covergen table and geo database, version 1.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn covergen_for_tests() -> Arc<Steering> {
    let spec = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    let table = edgesteer_config::compile(&spec).unwrap();
    Arc::new(Steering::new(
        1,
        spec,
        table,
        Arc::new(edgesteer_geo::GeoDb::bundled().unwrap()),
        Arc::new(crate::metrics::Metrics::new().unwrap()),
    ))
}
