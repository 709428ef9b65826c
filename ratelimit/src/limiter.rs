//! The [`Limiter`]: owns every policy's state, binds tables to it and
//! answers one question per request. Its block-list operations are in
//! [`crate::blocklist`] (the entries in [`crate::block`]), its shared-store
//! status in [`crate::store`], its keys in [`crate::keys`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use edgesteer_config::ratelimit::{LimitKey, LimitScope, RateLimitPolicy, StoreFailure};
use http::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::block::{Block, BlockEvent};
use crate::gcra::Verdict;
pub use crate::keys::{client_unit, ip_key, token_key};
use crate::state::PolicyState;
use crate::store::{StoreSnapshot, StoreStatus};

type Identity = edgesteer_config::ratelimit::PolicyIdentity;

/// A table's policies bound to their long-lived state; built once per
/// table version, so the request path does no lookups by name.
pub struct Bound {
    pub(crate) states: Vec<Arc<PolicyState>>,
    /// `RateLimit-Policy` values by `[policy][tier]`.
    policy_header: Vec<Vec<HeaderValue>>,
}

impl Bound {
    pub fn state(&self, policy: usize) -> Option<&Arc<PolicyState>> {
        self.states.get(policy)
    }

    /// The `RateLimit-Policy` value of a policy's tier.
    pub fn policy_header(&self, policy: usize, tier: usize) -> Option<&HeaderValue> {
        self.policy_header.get(policy)?.get(tier)
    }
}

/// What the proxy needs from one request.
pub struct Request<'a> {
    pub client: IpAddr,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// One policy's answer, for headers and refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub policy: usize,
    pub tier: usize,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed; the quota to advertise when some policy asks for headers
    /// (the one with the fewest requests remaining).
    Allowed(Option<Quota>),
    /// Over a limit.
    Limited(Quota),
    /// The address is on the block list.
    Blocked { retry_after_s: u64 },
    /// A `fail_closed` global policy cannot reach the shared store.
    StoreUnavailable { policy: usize },
}

/// Per-policy figures for metrics and the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyStats {
    pub policy: String,
    pub scope: &'static str,
    pub keys: usize,
    pub overflowed: u64,
}

pub struct Limiter {
    epoch: Instant,
    states: Mutex<HashMap<Identity, Weak<PolicyState>>>,
    pub(crate) blocks: DashMap<IpAddr, Block>,
    pub(crate) block_count: AtomicUsize,
    pub store: StoreStatus,
    /// Block changes made here, for the syncer to publish (with a store).
    pub(crate) outbox: Mutex<Vec<BlockEvent>>,
    /// Count requests per key for the traffic model (`usage.rs`).
    pub(crate) usage_on: std::sync::atomic::AtomicBool,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            epoch: Instant::now(),
            states: Mutex::new(HashMap::new()),
            blocks: DashMap::new(),
            block_count: AtomicUsize::new(0),
            store: StoreStatus::default(),
            outbox: Mutex::new(Vec::new()),
            usage_on: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Nanoseconds on the limiter clock.
    #[inline]
    pub fn clock(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Binds a table's policies to state: a policy whose identity (name,
    /// key source, scope and limits) matches a live one keeps that state.
    pub fn bind(&self, policies: &[RateLimitPolicy]) -> Bound {
        let mut registry = self.states.lock().unwrap_or_else(|e| e.into_inner());
        registry.retain(|_, w| w.strong_count() > 0);
        let states = policies
            .iter()
            .map(|p| {
                let id = p.identity();
                if let Some(s) = registry.get(&id).and_then(Weak::upgrade) {
                    s.set_max_keys(p.max_keys);
                    return s;
                }
                let s = Arc::new(PolicyState::new(p));
                registry.insert(id, Arc::downgrade(&s));
                s
            })
            .collect();
        let policy_header = policies
            .iter()
            .map(|p| {
                p.tiers
                    .iter()
                    .map(|t| {
                        // The sustained rate per second; `RateLimit` says what
                        // is left of the burst right now.
                        HeaderValue::from_str(&format!("\"{}\";q={};w=1", p.name, t.rate))
                            .unwrap_or(HeaderValue::from_static("invalid"))
                    })
                    .collect()
            })
            .collect();
        Bound {
            states,
            policy_header,
        }
    }

    /// Live policies (for the syncer and the sweeper).
    /// The live states of `global` policies: what a store sync reconciles.
    pub(crate) fn live_global(&self) -> Vec<Arc<PolicyState>> {
        self.live()
            .into_iter()
            .filter(|s| s.scope == LimitScope::Global)
            .collect()
    }

    pub(crate) fn live(&self) -> Vec<Arc<PolicyState>> {
        let registry = self.states.lock().unwrap_or_else(|e| e.into_inner());
        registry.values().filter_map(Weak::upgrade).collect()
    }

    /// Checks a request against every policy that covers it, in table
    /// order; the first refusal wins. Allowed requests consume quota in
    /// every matching policy.
    pub fn evaluate(
        &self,
        bound: &Bound,
        policies: &[RateLimitPolicy],
        req: &Request<'_>,
        at: Instant,
    ) -> Outcome {
        let now = self.clock(at);
        if self.block_count.load(Ordering::Relaxed) > 0 {
            if let Some(b) = self.blocks.get(&client_unit(req.client)) {
                if b.until_ns > now {
                    return Outcome::Blocked {
                        retry_after_s: (b.until_ns - now).div_ceil(1_000_000_000),
                    };
                }
            }
        }
        let mut advertise: Option<Quota> = None;
        for (i, (p, state)) in policies.iter().zip(&bound.states).enumerate() {
            if !p.applies(req.host, req.path) {
                continue;
            }
            let (key, tier) = match &p.key {
                LimitKey::ClientIp => (ip_key(req.client), p.default_tier),
                LimitKey::Header(h) => {
                    match req
                        .headers
                        .get(h.as_str())
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| p.tier_of(v).map(|t| (v, t)))
                    {
                        Some((v, t)) => (token_key(v.as_bytes()), t),
                        // Unknown or missing: the default tier, per client IP.
                        None => (ip_key(req.client), p.default_tier),
                    }
                }
            };
            // Per key: on a Redis Cluster only keys whose master is lost
            // are refused (`StoreStatus::ok_for`).
            if p.scope == LimitScope::Global
                && p.on_store_error == StoreFailure::Closed
                && !self.store.ok_for(key, now)
            {
                return Outcome::StoreUnavailable { policy: i };
            }
            let Some(t) = p.tiers.get(tier) else {
                continue;
            };
            let abuse = p
                .abuse
                .as_ref()
                .map(|a| (u64::from(t.rate) * u64::from(a.multiple), a.for_secs));
            let sync =
                p.scope == LimitScope::Global && self.store.configured.load(Ordering::Relaxed);
            let tally = self.counting().then_some(tier);
            let checked = state.check_tallied(key, (t, tally), abuse, now, sync);
            let quota = Quota {
                policy: i,
                tier,
                verdict: checked.verdict,
            };
            if checked.abusive {
                if let Some(a) = &p.abuse {
                    let reason = format!(
                        "above {}x the {} limit of {}/s for {} consecutive seconds",
                        a.multiple, t.name, t.rate, a.for_secs
                    );
                    if self.block(req.client, &p.name, reason, a.block, at) {
                        return Outcome::Blocked {
                            retry_after_s: a.block.as_secs().max(1),
                        };
                    }
                }
            }
            if !checked.verdict.allowed {
                return Outcome::Limited(quota);
            }
            if p.response_headers
                && advertise.is_none_or(|q| q.verdict.remaining > quota.verdict.remaining)
            {
                advertise = Some(quota);
            }
        }
        Outcome::Allowed(advertise)
    }

    /// Per-policy figures. States of one name (an old table version still
    /// finishing requests beside a new one) are added up.
    pub fn stats(&self) -> Vec<PolicyStats> {
        let mut v: Vec<PolicyStats> = Vec::new();
        for s in self.live() {
            let (keys, overflowed) = (s.keys(), s.overflowed.load(Ordering::Relaxed));
            match v.iter_mut().find(|p| p.policy == s.name) {
                Some(p) => {
                    p.keys += keys;
                    p.overflowed += overflowed;
                }
                None => v.push(PolicyStats {
                    policy: s.name.clone(),
                    scope: match s.scope {
                        LimitScope::Local => "local",
                        LimitScope::Global => "global",
                    },
                    keys,
                    overflowed,
                }),
            }
        }
        v.sort_by(|a, b| a.policy.cmp(&b.policy));
        v
    }

    /// Overflow checks since the last call, by policy name (for a
    /// monotonic counter that survives states being replaced).
    pub fn drain_overflow(&self) -> Vec<(String, u64)> {
        self.live()
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.overflow_unreported.swap(0, Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Drops idle keys and expired blocks.
    pub fn sweep(&self) {
        let now = self.clock(Instant::now());
        for s in self.live() {
            s.sweep(now);
        }
        let mut expired = 0;
        self.blocks.retain(|_, b| {
            let keep = b.until_ns > now;
            expired += usize::from(!keep);
            keep
        });
        self.block_count.fetch_sub(expired, Ordering::Relaxed);
    }

    /// Whether global policies can use the store right now.
    #[inline]
    pub fn store_ok(&self, now: u64) -> bool {
        self.store.ok(now)
    }

    /// Declares that a store syncer runs every `interval`: global policies
    /// count for it, and the store counts as up (for one staleness period)
    /// until the syncer reports otherwise. Call before serving.
    pub fn expect_store(&self, interval: Duration) {
        self.store.expect(interval, self.clock(Instant::now()));
    }

    /// Warns when a table has global policies but no store will sync them.
    pub fn warn_if_unsynced(&self, policies: &[RateLimitPolicy]) {
        self.store.warn_if_unsynced(policies);
    }

    pub fn store_snapshot(&self) -> StoreSnapshot {
        self.store.snapshot(self.clock(Instant::now()))
    }

    /// Sweeps every `every` until the task is dropped. Each sweep runs on
    /// the runtime's blocking pool: a sweep of the largest maps takes
    /// milliseconds of CPU, and the health probes and the store's sync
    /// that share this runtime's one thread must not wait behind it.
    pub async fn run_sweeper(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let limiter = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || limiter.sweep()).await {
                tracing::warn!(error = %e, "rate-limit sweep did not finish; trying again next time");
            }
        }
    }
}

/// Formats the `RateLimit` field for a quota: `"name";r=R;t=T`. `R` is
/// capped at the advertised quota (`q`, the rate per second): a burst larger
/// than the rate never shows as more than `q` left.
pub fn ratelimit_header(policy: &str, quota: u32, verdict: &Verdict) -> HeaderValue {
    let t = verdict.reset_ns.div_ceil(1_000_000_000);
    let r = verdict.remaining.min(quota);
    let write = |w: &mut dyn std::io::Write| write!(w, "\"{policy}\";r={r};t={t}");
    // Formatted on the stack and copied once (a policy name is short;
    // a long one takes the slow path).
    let mut buf = [0u8; 128];
    let mut w = &mut buf[..];
    let v = match write(&mut w) {
        Ok(()) => {
            let left = w.len();
            HeaderValue::from_bytes(buf.get(..buf.len() - left).unwrap_or_default())
        }
        Err(_) => {
            let mut heap = Vec::new();
            let _ = write(&mut heap); // a Vec takes any length
            HeaderValue::from_bytes(&heap)
        }
    };
    v.unwrap_or(HeaderValue::from_static("invalid"))
}

/// Whole seconds a refused client should wait (at least 1).
pub fn retry_after_secs(verdict: &Verdict) -> u64 {
    verdict.retry_after_ns.div_ceil(1_000_000_000).max(1)
}

#[cfg(test)]
mod tests;
