//! Prometheus metrics. Label values are resolved to counter handles when a
//! routing table is installed ([`RegionMetrics`]), so recording on the
//! request path is an atomic add with no label hashing or locking.
//!
//! Cardinality is bounded by construction: region, track, status class,
//! zone and lookup result; never paths or addresses.

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
    pub ratelimit_blocked: IntGauge,
    ratelimit_store_refusals: IntCounterVec,
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
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests by serving region, release track and status class.",
            ),
            &["region", "track", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request start to response end, by region and track.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["region", "track"],
        )?;
        let upstream_connect = HistogramVec::new(
            HistogramOpts::new(
                "edgesteer_upstream_connect_seconds",
                "Time to obtain an upstream connection (0 when reused).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["region"],
        )?;
        let upstream_response = HistogramVec::new(
            HistogramOpts::new(
                "edgesteer_upstream_response_seconds",
                "Time from upstream request to upstream response header.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["region"],
        )?;
        let table_version = IntGauge::new(
            "edgesteer_table_version",
            "Version of the routing table in use.",
        )?;
        let geo_lookups = IntCounterVec::new(
            Opts::new(
                "edgesteer_geo_lookups_total",
                "Client geo lookups by result.",
            ),
            &["result"],
        )?;
        let zone_blocked = IntCounterVec::new(
            Opts::new(
                "edgesteer_zone_blocked_total",
                "Requests refused with 503 because no region of the client's zone was available.",
            ),
            &["zone"],
        )?;
        let pin_refused = IntCounterVec::new(
            Opts::new(
                "edgesteer_pin_refused_total",
                "Requests refused with 421 because a host pin lies outside the client's zone.",
            ),
            &["zone"],
        )?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "edgesteer_failovers_total",
                "Requests served outside their home region, by cause.",
            ),
            &["from", "to", "reason"],
        )?;
        let backend_healthy = IntGaugeVec::new(
            Opts::new(
                "edgesteer_backend_healthy",
                "1 when a backend may take traffic.",
            ),
            &["region", "backend"],
        )?;
        let downstream_active = IntGauge::new(
            "edgesteer_downstream_requests_active",
            "Requests being served.",
        )?;
        let upstream_active = IntGauge::new(
            "edgesteer_upstream_requests_active",
            "Requests with an upstream connection in use.",
        )?;
        let table_applies = IntCounterVec::new(
            Opts::new(
                "edgesteer_table_applies_total",
                "Routing tables offered to this proxy, by outcome.",
            ),
            &["outcome"],
        )?;
        let access_log_dropped = IntCounter::new(
            "edgesteer_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
        )?;
        let rollout_step = IntGaugeVec::new(
            Opts::new(
                "edgesteer_rollout_step",
                "Current step of the region's canary rollout.",
            ),
            &["region"],
        )?;
        let rollout_state = IntGaugeVec::new(
            Opts::new(
                "edgesteer_rollout_state",
                "1 for the state the region's canary rollout is in.",
            ),
            &["region", "state"],
        )?;
        let track_fallbacks = IntCounterVec::new(
            Opts::new("edgesteer_track_fallbacks_total", "Requests served by the other track of their region because theirs had no available backend."),
            &["region", "track"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "edgesteer_rate_limited_total",
                "Requests refused with 429 by a rate-limit policy, by policy and tier (tier `blocked` for the abuse block list).",
            ),
            &["policy", "tier"],
        )?;
        let ratelimit_keys = IntGaugeVec::new(
            Opts::new(
                "edgesteer_ratelimit_keys",
                "Keys a rate-limit policy tracks right now (idle keys are evicted).",
            ),
            &["policy"],
        )?;
        let ratelimit_overflow = IntCounterVec::new(
            Opts::new(
                "edgesteer_ratelimit_overflow_total",
                "Checks of keys that arrived past the policy's max_keys and shared an overflow cell.",
            ),
            &["policy"],
        )?;
        let ratelimit_store_errors = IntCounter::new(
            "edgesteer_ratelimit_store_errors_total",
            "Failed or timed-out syncs with the rate-limit store (Redis).",
        )?;
        let ratelimit_store_syncs = IntCounter::new(
            "edgesteer_ratelimit_store_syncs_total",
            "Successful syncs with the rate-limit store (Redis).",
        )?;
        let ratelimit_store_up = IntGauge::new(
            "edgesteer_ratelimit_store_up",
            "1 while the rate-limit store (Redis) answers syncs.",
        )?;
        let ratelimit_blocked = IntGauge::new(
            "edgesteer_ratelimit_blocked_addresses",
            "Client addresses on the abuse block list.",
        )?;
        let ratelimit_store_refusals = IntCounterVec::new(
            Opts::new(
                "edgesteer_ratelimit_store_refusals_total",
                "Requests answered 503 by a fail_closed global policy while the store was down.",
            ),
            &["policy"],
        )?;
        for c in [
            Box::new(rate_limited.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ratelimit_keys.clone()),
            Box::new(ratelimit_overflow.clone()),
            Box::new(ratelimit_store_errors.clone()),
            Box::new(ratelimit_store_syncs.clone()),
            Box::new(ratelimit_store_up.clone()),
            Box::new(ratelimit_blocked.clone()),
            Box::new(ratelimit_store_refusals.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(rollout_step.clone()),
            Box::new(rollout_state.clone()),
            Box::new(track_fallbacks.clone()),
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(upstream_connect.clone()),
            Box::new(upstream_response.clone()),
            Box::new(table_version.clone()),
            Box::new(geo_lookups.clone()),
            Box::new(zone_blocked.clone()),
            Box::new(pin_refused.clone()),
            Box::new(failovers.clone()),
            Box::new(backend_healthy.clone()),
            Box::new(downstream_active.clone()),
            Box::new(upstream_active.clone()),
            Box::new(table_applies.clone()),
        ] {
            registry.register(c)?;
        }
        let geo = LookupStatus::ALL.map(|s| geo_lookups.with_label_values(&[s.as_str()]));
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_connect,
            upstream_response,
            table_version,
            zone_blocked,
            pin_refused,
            failovers,
            backend_healthy,
            downstream_active,
            upstream_active,
            table_applies,
            access_log_dropped,
            rollout_step,
            rollout_state,
            track_fallbacks,
            geo,
            blocked: rate_limited.with_label_values(&["abuse-block", "blocked"]),
            rate_limited,
            ratelimit_keys,
            ratelimit_overflow,
            ratelimit_store_errors,
            ratelimit_store_syncs,
            ratelimit_store_up,
            ratelimit_blocked,
            ratelimit_store_refusals,
            observe_lock: std::sync::Mutex::new(()),
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

    /// Copies the limiter's figures into the metrics (at scrape time; one
    /// scrape at a time, so the counter deltas are not applied twice).
    pub fn observe_limiter(&self, limiter: &edgesteer_ratelimit::Limiter) {
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
        self.ratelimit_blocked
            .set(i64::try_from(limiter.block_count()).unwrap_or(i64::MAX));
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
