//! Prometheus metrics. Label values are resolved to counter handles when a
//! routing table is installed ([`RegionMetrics`]), so recording on the
//! request path is an atomic add with no label hashing or locking.
//!
//! Cardinality is bounded by construction: region, track, status class,
//! zone and lookup result; never paths or client addresses (the one
//! address label, a rate-limit Redis Cluster node's, is bounded by the
//! cluster: `store_metrics.rs`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use edgesteer_config::RoutingTable;
use edgesteer_geo::LookupStatus;

/// Buckets resolving 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status classes used as the `status` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Region label for requests that never reached a region (refused, errors).
pub const NO_REGION: &str = "none";

/// A metric family's name and help text.
type Family = (&'static str, &'static str);

const REQUESTS: Family = (
    "http_requests_total",
    "Requests by serving region, release track and status class.",
);
const DURATION: Family = (
    "http_request_duration_seconds",
    "Time from request start to response end, by region and track.",
);
const UPSTREAM_CONNECT: Family = (
    "edgesteer_upstream_connect_seconds",
    "Time to obtain an upstream connection (0 when reused).",
);
const UPSTREAM_RESPONSE: Family = (
    "edgesteer_upstream_response_seconds",
    "Time from upstream request to upstream response header.",
);
const TABLE_VERSION: Family = (
    "edgesteer_table_version",
    "Version of the routing table in use.",
);
const GEO_LOOKUPS: Family = (
    "edgesteer_geo_lookups_total",
    "Client geo lookups by result.",
);
const ZONE_BLOCKED: Family = (
    "edgesteer_zone_blocked_total",
    "Requests refused with 503 because no region of the client's zone was available.",
);
const PIN_REFUSED: Family = (
    "edgesteer_pin_refused_total",
    "Requests refused with 421 because a host pin lies outside the client's zone.",
);
const FAILOVERS: Family = (
    "edgesteer_failovers_total",
    "Requests served outside their home region, by cause.",
);
const BACKEND_HEALTHY: Family = (
    "edgesteer_backend_healthy",
    "1 when a backend may take traffic.",
);
const DOWNSTREAM_ACTIVE: Family = (
    "edgesteer_downstream_requests_active",
    "Requests being served.",
);
const UPSTREAM_ACTIVE: Family = (
    "edgesteer_upstream_requests_active",
    "Requests with an upstream connection in use.",
);
const TABLE_APPLIES: Family = (
    "edgesteer_table_applies_total",
    "Routing tables offered to this proxy, by outcome.",
);
const ACCESS_LOG_DROPPED: Family = (
    "edgesteer_access_log_dropped_total",
    "Access-log lines dropped because the writer fell behind.",
);
const ROLLOUT_STEP: Family = (
    "edgesteer_rollout_step",
    "Current step of the region's canary rollout.",
);
const ROLLOUT_STATE: Family = (
    "edgesteer_rollout_state",
    "1 for the state the region's canary rollout is in.",
);
const TRACK_FALLBACKS: Family = (
    "edgesteer_track_fallbacks_total",
    "Requests served by the other track of their region because theirs had no available backend.",
);
const RATE_LIMITED: Family = ("edgesteer_rate_limited_total", "Requests refused with 429 by a rate-limit policy, by policy and tier (tier `blocked` for the abuse block list).");
const RATELIMIT_KEYS: Family = (
    "edgesteer_ratelimit_keys",
    "Keys a rate-limit policy tracks right now (idle keys are evicted).",
);
const RATELIMIT_OVERFLOW: Family = (
    "edgesteer_ratelimit_overflow_total",
    "Checks of keys that arrived past the policy's max_keys and shared an overflow cell.",
);
const RATELIMIT_STORE_ERRORS: Family = (
    "edgesteer_ratelimit_store_errors_total",
    "Failed or timed-out syncs with the rate-limit store (Redis).",
);
const RATELIMIT_STORE_SYNCS: Family = (
    "edgesteer_ratelimit_store_syncs_total",
    "Successful syncs with the rate-limit store (Redis).",
);
const RATELIMIT_STORE_UP: Family = (
    "edgesteer_ratelimit_store_up",
    "1 while the rate-limit store (Redis) answers syncs.",
);
const RATELIMIT_STORE_CONFIGURED: Family = (
    "edgesteer_ratelimit_store_configured",
    "1 when this proxy syncs with a rate-limit store (--redis); alert on store_up only then.",
);
const RATELIMIT_BLOCKED: Family = (
    "edgesteer_ratelimit_blocked_addresses",
    "Client addresses on the abuse block list.",
);
const RATELIMIT_STORE_REFUSALS: Family = (
    "edgesteer_ratelimit_store_refusals_total",
    "Requests answered 503 by a fail_closed global policy while the store was down.",
);

fn opts((name, help): Family) -> Opts {
    Opts::new(name, help)
}

/// Latency histogram options: 1 ms to 10 s.
fn latency((name, help): Family) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

const REFUSALS: Family = (
    "edgesteer_refusals_total",
    "Requests the proxy answered itself instead of an origin, by reason (a fixed set, all present from start).",
);

const CONNECTIONS_OPEN: Family = (
    "edgesteer_downstream_connections_open",
    "Client connections open on the proxy's listeners.",
);
const CONNECTIONS_REFUSED: Family = (
    "edgesteer_connections_refused_total",
    "Client connections closed at accept because [limits] max_connections were open.",
);

const STALLED_CHUNKS: Family = (
    "edgesteer_stalled_chunks_compacted_total",
    "Answer body chunks shrunk to their unwritten rest because an HTTP/1 client stopped reading inside them (the chunk's read buffer freed): how often clients stall mid-answer.",
);

const HEAD_TIMEOUTS: Family = (
    "edgesteer_head_timeouts_total",
    "Client connections closed because a request head did not arrive whole within [limits] head_timeout_ms (slowloris).",
);

const TLS_HANDSHAKE_TIMEOUTS: Family = (
    "edgesteer_tls_handshake_timeouts_total",
    "Client connections shut down because their TLS handshake did not finish within [limits] tls_handshake_timeout_ms.",
);

const UPSTREAM_TLS_ERRORS: Family = (
    "edgesteer_upstream_tls_errors_total",
    "TLS handshakes with origins that failed, by region and reason (expired, unknown_ca, name_mismatch, handshake).",
);

/// The reasons of `edgesteer_upstream_tls_errors_total`.
pub const TLS_REASONS: [&str; 4] = ["expired", "unknown_ca", "name_mismatch", "handshake"];

const RETRIES_REFUSED: Family = (
    "edgesteer_retries_refused_total",
    "Retries not made because the proxy-wide retry budget (20% of requests in flight, at least 3) was spent.",
);

const CONNECT_FAILURES: Family = (
    "edgesteer_upstream_connect_failures_total",
    "Upstream attempts that failed before any byte of the request was sent (refused, timed out, TLS); each is tried elsewhere while attempts are left, outside the retry budget.",
);

/// Registers each metric family in the registry it wraps.
struct Families(Registry);

impl Families {
    fn add<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        c: C,
    ) -> Result<C, prometheus::Error> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_connect: HistogramVec,
    upstream_response: HistogramVec,
    pub table_version: IntGauge,
    pub zone_blocked: IntCounterVec,
    pub pin_refused: IntCounterVec,
    pub failovers: IntCounterVec,
    pub backend_healthy: IntGaugeVec,
    pub downstream_active: IntGauge,
    pub upstream_active: IntGauge,
    pub table_applies: IntCounterVec,
    pub access_log_dropped: IntCounter,
    rollout_step: IntGaugeVec,
    rollout_state: IntGaugeVec,
    pub track_fallbacks: IntCounterVec,
    /// `edgesteer_refusals_total{reason}`; the proxy resolves one handle
    /// per reason at start, so every reason shows from the first scrape.
    pub refusals: IntCounterVec,
    pub retries_refused: IntCounter,
    pub connect_failures: IntCounter,
    pub upstream_tls_errors: IntCounterVec,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounter,
    pub head_timeouts: IntCounter,
    stalled_chunks: IntCounter,
    pub tls_handshake_timeouts: IntCounter,
    geo: [IntCounter; 4],
    rate_limited: IntCounterVec,
    /// `edgesteer_rate_limited_total{policy="abuse-block",tier="blocked"}`,
    /// resolved once: a blocked abuser may send many requests.
    blocked: IntCounter,
    pub ratelimit_keys: IntGaugeVec,
    pub ratelimit_overflow: IntCounterVec,
    pub ratelimit_store_errors: IntCounter,
    pub ratelimit_store_syncs: IntCounter,
    pub ratelimit_store_up: IntGauge,
    pub ratelimit_store_configured: IntGauge,
    pub ratelimit_blocked: IntGauge,
    ratelimit_store_refusals: IntCounterVec,
    store_nodes: crate::store_metrics::StoreNodeMetrics,
    observe_lock: std::sync::Mutex<()>,
}

/// Pre-resolved handles for one region.
#[derive(Clone)]
pub struct RegionMetrics {
    /// `[track][status class]`
    requests: [[IntCounter; 5]; 2],
    /// By track index.
    pub duration: [Histogram; 2],
    pub upstream_connect: Histogram,
    pub upstream_response: Histogram,
}

impl RegionMetrics {
    pub fn request(&self, track: usize, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(c) = self.requests.get(track).and_then(|t| t.get(class)) {
            c.inc();
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Families(Registry::new());
        let geo_lookups = r.add(IntCounterVec::new(opts(GEO_LOOKUPS), &["result"])?)?;
        let rate_limited = r.add(IntCounterVec::new(opts(RATE_LIMITED), &["policy", "tier"])?)?;
        Ok(Metrics {
            requests: r.add(IntCounterVec::new(
                opts(REQUESTS),
                &["region", "track", "status"],
            )?)?,
            duration: r.add(HistogramVec::new(latency(DURATION), &["region", "track"])?)?,
            upstream_connect: r.add(HistogramVec::new(latency(UPSTREAM_CONNECT), &["region"])?)?,
            upstream_response: r
                .add(HistogramVec::new(latency(UPSTREAM_RESPONSE), &["region"])?)?,
            table_version: r.add(IntGauge::with_opts(opts(TABLE_VERSION))?)?,
            zone_blocked: r.add(IntCounterVec::new(opts(ZONE_BLOCKED), &["zone"])?)?,
            pin_refused: r.add(IntCounterVec::new(opts(PIN_REFUSED), &["zone"])?)?,
            failovers: r.add(IntCounterVec::new(
                opts(FAILOVERS),
                &["from", "to", "reason"],
            )?)?,
            backend_healthy: r.add(IntGaugeVec::new(
                opts(BACKEND_HEALTHY),
                &["region", "backend"],
            )?)?,
            downstream_active: r.add(IntGauge::with_opts(opts(DOWNSTREAM_ACTIVE))?)?,
            upstream_active: r.add(IntGauge::with_opts(opts(UPSTREAM_ACTIVE))?)?,
            table_applies: r.add(IntCounterVec::new(opts(TABLE_APPLIES), &["outcome"])?)?,
            access_log_dropped: r.add(IntCounter::with_opts(opts(ACCESS_LOG_DROPPED))?)?,
            rollout_step: r.add(IntGaugeVec::new(opts(ROLLOUT_STEP), &["region"])?)?,
            rollout_state: r.add(IntGaugeVec::new(opts(ROLLOUT_STATE), &["region", "state"])?)?,
            track_fallbacks: r.add(IntCounterVec::new(
                opts(TRACK_FALLBACKS),
                &["region", "track"],
            )?)?,
            ratelimit_keys: r.add(IntGaugeVec::new(opts(RATELIMIT_KEYS), &["policy"])?)?,
            ratelimit_overflow: r
                .add(IntCounterVec::new(opts(RATELIMIT_OVERFLOW), &["policy"])?)?,
            ratelimit_store_errors: r.add(IntCounter::with_opts(opts(RATELIMIT_STORE_ERRORS))?)?,
            ratelimit_store_syncs: r.add(IntCounter::with_opts(opts(RATELIMIT_STORE_SYNCS))?)?,
            ratelimit_store_up: r.add(IntGauge::with_opts(opts(RATELIMIT_STORE_UP))?)?,
            ratelimit_store_configured: r
                .add(IntGauge::with_opts(opts(RATELIMIT_STORE_CONFIGURED))?)?,
            ratelimit_blocked: r.add(IntGauge::with_opts(opts(RATELIMIT_BLOCKED))?)?,
            ratelimit_store_refusals: r.add(IntCounterVec::new(
                opts(RATELIMIT_STORE_REFUSALS),
                &["policy"],
            )?)?,
            refusals: r.add(IntCounterVec::new(opts(REFUSALS), &["reason"])?)?,
            retries_refused: r.add(IntCounter::with_opts(opts(RETRIES_REFUSED))?)?,
            connect_failures: r.add(IntCounter::with_opts(opts(CONNECT_FAILURES))?)?,
            connections_open: r.add(IntGauge::with_opts(opts(CONNECTIONS_OPEN))?)?,
            connections_refused: r.add(IntCounter::with_opts(opts(CONNECTIONS_REFUSED))?)?,
            head_timeouts: r.add(IntCounter::with_opts(opts(HEAD_TIMEOUTS))?)?,
            stalled_chunks: r.add(IntCounter::with_opts(opts(STALLED_CHUNKS))?)?,
            tls_handshake_timeouts: r.add(IntCounter::with_opts(opts(TLS_HANDSHAKE_TIMEOUTS))?)?,
            upstream_tls_errors: r.add(IntCounterVec::new(
                opts(UPSTREAM_TLS_ERRORS),
                &["region", "reason"],
            )?)?,
            geo: LookupStatus::ALL.map(|s| geo_lookups.with_label_values(&[s.as_str()])),
            blocked: rate_limited.with_label_values(&["abuse-block", "blocked"]),
            rate_limited,
            store_nodes: crate::store_metrics::StoreNodeMetrics::register(&r.0)?,
            observe_lock: std::sync::Mutex::new(()),
            registry: r.0,
        })
    }

    /// `edgesteer_rate_limited_total` handles by `[policy][tier]`.
    pub fn for_rate_limits(&self, table: &RoutingTable) -> Vec<Vec<IntCounter>> {
        table
            .rate_limits
            .iter()
            .map(|p| {
                p.tiers
                    .iter()
                    .map(|t| {
                        self.rate_limited
                            .with_label_values(&[p.name.as_str(), t.name.as_str()])
                    })
                    .collect()
            })
            .collect()
    }

    /// `edgesteer_ratelimit_store_refusals_total` handles by policy index.
    pub fn for_store_refusals(&self, table: &RoutingTable) -> Vec<IntCounter> {
        table
            .rate_limits
            .iter()
            .map(|p| {
                self.ratelimit_store_refusals
                    .with_label_values(&[p.name.as_str()])
            })
            .collect()
    }

    /// A refusal by the abuse block list.
    pub fn blocked(&self) {
        self.blocked.inc();
    }

    /// Copies the figures kept outside the registry, the limiter's and the
    /// response pipes', into the metrics (at scrape time; one scrape at a
    /// time, so the counter deltas are not applied twice).
    pub fn observe(&self, limiter: &edgesteer_ratelimit::Limiter) {
        let _one = self
            .observe_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in limiter.stats() {
            self.ratelimit_keys
                .with_label_values(&[p.policy.as_str()])
                .set(i64::try_from(p.keys).unwrap_or(i64::MAX));
        }
        for (policy, n) in limiter.drain_overflow() {
            self.ratelimit_overflow
                .with_label_values(&[policy.as_str()])
                .inc_by(n);
        }
        let store = limiter.store_snapshot();
        let c = &self.ratelimit_store_errors;
        c.inc_by(store.errors.saturating_sub(c.get()));
        let c = &self.ratelimit_store_syncs;
        c.inc_by(store.syncs.saturating_sub(c.get()));
        self.ratelimit_store_up.set(i64::from(store.up));
        self.ratelimit_store_configured
            .set(i64::from(store.configured));
        self.store_nodes.observe(store.cluster.as_ref());
        self.ratelimit_blocked
            .set(i64::try_from(limiter.block_count()).unwrap_or(i64::MAX));
        let c = &self.stalled_chunks;
        c.inc_by(pingora_proxy::pipe_budget::chunks_compacted().saturating_sub(c.get()));
    }

    /// Handles for every region of `table`, index-aligned, plus one for
    /// [`NO_REGION`] at the end.
    pub fn for_table(&self, table: &RoutingTable) -> Vec<RegionMetrics> {
        table
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .chain(std::iter::once(NO_REGION))
            .map(|name| self.region(name))
            .collect()
    }

    fn region(&self, name: &str) -> RegionMetrics {
        let track =
            |t: &str| STATUS_CLASSES.map(|s| self.requests.with_label_values(&[name, t, s]));
        RegionMetrics {
            requests: [track("stable"), track("canary")],
            duration: ["stable", "canary"].map(|t| self.duration.with_label_values(&[name, t])),
            upstream_connect: self.upstream_connect.with_label_values(&[name]),
            upstream_response: self.upstream_response.with_label_values(&[name]),
        }
    }

    /// Creates every series of the families with known label sets at 0
    /// (zone refusals by zone, failovers by pair and cause), so dashboards
    /// and alerts see them before the first event.
    pub fn preinit(&self, table: &RoutingTable) {
        let zones = table.zones.iter().map(|z| z.name.as_str());
        for zone in zones.chain([NO_REGION]) {
            self.zone_blocked.with_label_values(&[zone]);
            self.pin_refused.with_label_values(&[zone]);
        }
        for r in table.regions.iter().filter(|r| r.upstream.tls) {
            for reason in TLS_REASONS {
                self.upstream_tls_errors
                    .with_label_values(&[r.name.as_str(), reason]);
            }
        }
        for from in &table.regions {
            for to in &table.regions {
                if from.name == to.name {
                    continue;
                }
                for reason in ["failover", "latency_fallback"] {
                    self.failovers.with_label_values(&[
                        from.name.as_str(),
                        to.name.as_str(),
                        reason,
                    ]);
                }
            }
        }
    }

    /// Publishes each region's rollout state and step from a table.
    pub fn set_rollouts(&self, table: &RoutingTable) {
        for r in &table.regions {
            self.rollout_step
                .with_label_values(&[r.name.as_str()])
                .set(r.rollout_step as i64);
            for s in edgesteer_config::model::RolloutState::ALL {
                self.rollout_state
                    .with_label_values(&[r.name.as_str(), s.as_str()])
                    .set(i64::from(s == r.rollout_state));
            }
        }
    }

    pub fn geo_lookup(&self, status: LookupStatus) {
        let i = LookupStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(3);
        if let Some(c) = self.geo.get(i) {
            c.inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
