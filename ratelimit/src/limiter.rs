//! The [`Limiter`]: owns every policy's state, the abuse block list and the
//! shared-store status, and answers one question per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use edgesteer_config::ratelimit::{LimitKey, LimitScope, RateLimitPolicy, StoreFailure};
use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::gcra::Verdict;
use crate::state::PolicyState;

/// Most addresses blocked at once; further abusers are only rate-limited.
pub const MAX_BLOCKS: usize = 100_000;
/// The store counts as down when no sync succeeded for this long (or for
/// four sync intervals, if that is longer).
pub const STORE_STALE: Duration = Duration::from_secs(1);

type Identity = edgesteer_config::ratelimit::PolicyIdentity;

/// The unit a client address is limited and blocked as: an IPv4 address
/// (also when written v4-mapped), or an IPv6 /64, the smallest prefix a
/// subscriber normally gets: one host can use a whole /64, so limiting per
/// /128 would hand it 2^64 fresh bursts.
#[inline]
pub fn client_unit(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(a) & !((1u128 << 64) - 1),
        )),
    }
}

/// The key of a client address (see [`client_unit`]).
#[inline]
pub fn ip_key(ip: IpAddr) -> u64 {
    let octets = match client_unit(ip) {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    xxh3_64_with_seed(&octets, 0x6970)
}

/// The key of a known API key.
#[inline]
pub fn token_key(token: &[u8]) -> u64 {
    xxh3_64_with_seed(token, 0x006b_6579)
}

/// A table's policies bound to their long-lived state; built once per
/// table version, so the request path does no lookups by name.
pub struct Bound {
    states: Vec<Arc<PolicyState>>,
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

/// An address on the block list.
#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub ip: IpAddr,
    pub policy: String,
    pub reason: String,
    #[serde(with = "epoch_ms")]
    pub since: SystemTime,
    #[serde(with = "epoch_ms")]
    pub until: SystemTime,
    #[serde(skip)]
    until_ns: u64,
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

mod epoch_ms {
    use std::time::SystemTime;
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::epoch_ms(*t))
    }
}

/// Shared-store (Redis) health as seen by the syncer.
#[derive(Default)]
pub struct StoreStatus {
    pub(crate) configured: AtomicBool,
    pub(crate) stale_ns: AtomicU64,
    pub(crate) up: AtomicBool,
    pub(crate) last_ok_ns: AtomicU64,
    pub errors: AtomicU64,
    pub syncs: AtomicU64,
    /// Rounds whose block-list sharing failed (limits were still synced).
    pub block_errors: AtomicU64,
}

/// The store's status at one moment, for metrics and the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct StoreSnapshot {
    /// A `--redis` URL was given.
    pub configured: bool,
    /// Global policies can use the store now.
    pub up: bool,
    pub errors: u64,
    pub syncs: u64,
    /// Rounds whose block-list sharing failed.
    pub block_errors: u64,
}

/// Per-policy figures for metrics and the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyStats {
    pub policy: String,
    pub scope: &'static str,
    pub keys: usize,
    pub overflowed: u64,
}

/// A block-list change to share with the fleet through the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockEvent {
    Block {
        ip: IpAddr,
        policy: String,
        reason: String,
        until: SystemTime,
    },
    Unblock {
        ip: IpAddr,
    },
}

/// Longest block reason kept (abuse reasons are far shorter; an operator's
/// is cut here so stream entries stay small).
pub const MAX_REASON: usize = 256;

fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Most block events kept for the syncer (older ones are dropped).
const MAX_OUTBOX: usize = 10_000;

pub struct Limiter {
    epoch: Instant,
    states: Mutex<HashMap<Identity, Weak<PolicyState>>>,
    blocks: DashMap<IpAddr, Block>,
    block_count: AtomicUsize,
    pub store: StoreStatus,
    /// Block changes made here, for the syncer to publish (with a store).
    outbox: Mutex<Vec<BlockEvent>>,
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
        }
    }

    fn publish(&self, event: BlockEvent) {
        if !self.store.configured.load(Ordering::Relaxed) {
            return;
        }
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if outbox.len() >= MAX_OUTBOX {
            // Keep the newest: a lift must not be lost behind its block.
            outbox.remove(0);
        }
        outbox.push(event);
    }

    /// Block changes made here since the last call.
    pub(crate) fn take_outbox(&self) -> Vec<BlockEvent> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back events a failed round could not publish.
    pub(crate) fn requeue_outbox(&self, mut events: Vec<BlockEvent>) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        events.append(&mut outbox);
        let excess = events.len().saturating_sub(MAX_OUTBOX);
        events.drain(..excess);
        *outbox = events;
    }

    /// Applies a change from the fleet's stream (not published again).
    /// Entries are applied in stream order, this proxy's own included, so
    /// every proxy ends with the same list.
    pub(crate) fn apply_remote(&self, event: BlockEvent) {
        match event {
            BlockEvent::Block {
                ip,
                policy,
                reason,
                until,
            } => {
                let left = until.duration_since(SystemTime::now()).unwrap_or_default();
                if !left.is_zero() {
                    self.insert_block(ip, &policy, cut(reason), left, Instant::now(), false);
                }
            }
            BlockEvent::Unblock { ip } => {
                self.remove_block(ip);
            }
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
    pub(crate) fn live(&self) -> Vec<Arc<PolicyState>> {
        let registry = self.states.lock().unwrap_or_else(|e| e.into_inner());
        registry.values().filter_map(Weak::upgrade).collect()
    }

    /// Whether global policies can use the store right now.
    #[inline]
    pub fn store_ok(&self, now: u64) -> bool {
        self.store.up.load(Ordering::Relaxed)
            && now.saturating_sub(self.store.last_ok_ns.load(Ordering::Relaxed))
                < self.store.stale_ns.load(Ordering::Relaxed)
    }

    /// Declares that a store syncer runs every `interval`: global policies
    /// count for it, and the store counts as up (for one staleness period)
    /// until the syncer reports otherwise. Call before serving.
    pub fn expect_store(&self, interval: Duration) {
        let stale = STORE_STALE.max(interval * 4);
        self.store.stale_ns.store(
            u64::try_from(stale.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.store
            .last_ok_ns
            .store(self.clock(Instant::now()), Ordering::Relaxed);
        self.store.up.store(true, Ordering::Relaxed);
        self.store.configured.store(true, Ordering::Relaxed);
    }

    /// Warns when a table has global policies but no store will sync them.
    pub fn warn_if_unsynced(&self, policies: &[RateLimitPolicy]) {
        if policies.iter().any(|p| p.scope == LimitScope::Global)
            && !self.store.configured.load(Ordering::Relaxed)
        {
            tracing::warn!("the table has global rate-limit policies but this proxy has no --redis; they act as if the store were down (fail_open: local limits, fail_closed: 503)");
        }
    }

    pub fn store_snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            configured: self.store.configured.load(Ordering::Relaxed),
            up: self.store_ok(self.clock(Instant::now())),
            errors: self.store.errors.load(Ordering::Relaxed),
            syncs: self.store.syncs.load(Ordering::Relaxed),
            block_errors: self.store.block_errors.load(Ordering::Relaxed),
        }
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
            if p.scope == LimitScope::Global
                && p.on_store_error == StoreFailure::Closed
                && !self.store_ok(now)
            {
                return Outcome::StoreUnavailable { policy: i };
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
            let Some(t) = p.tiers.get(tier) else {
                continue;
            };
            let abuse = p
                .abuse
                .as_ref()
                .map(|a| (u64::from(t.rate) * u64::from(a.multiple), a.for_secs));
            let sync =
                p.scope == LimitScope::Global && self.store.configured.load(Ordering::Relaxed);
            let checked = state.check(key, t, abuse, now, sync);
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

    /// Puts an address (its [`client_unit`]: an IPv6 /64) on the block
    /// list, for abuse or by an operator; false when the list is full.
    pub fn block(
        &self,
        ip: IpAddr,
        policy: &str,
        reason: String,
        length: Duration,
        at: Instant,
    ) -> bool {
        let until = SystemTime::now() + length;
        let reason = cut(reason);
        let inserted = self.insert_block(ip, policy, reason.clone(), length, at, true);
        if inserted {
            self.publish(BlockEvent::Block {
                ip: client_unit(ip),
                policy: policy.to_string(),
                reason,
                until,
            });
        }
        inserted
    }

    fn insert_block(
        &self,
        ip: IpAddr,
        policy: &str,
        reason: String,
        length: Duration,
        at: Instant,
        local: bool,
    ) -> bool {
        let ip = client_unit(ip);
        if self.blocks.len() >= MAX_BLOCKS && !self.blocks.contains_key(&ip) {
            tracing::warn!(%ip, "block list full ({MAX_BLOCKS}); address only rate-limited");
            return false;
        }
        let now = SystemTime::now();
        if local {
            tracing::warn!(%ip, policy, %reason, seconds = length.as_secs(), "address blocked");
        } else {
            tracing::debug!(%ip, policy, %reason, seconds = length.as_secs(), "block applied from the fleet");
        }
        let block = Block {
            ip,
            policy: policy.to_string(),
            reason,
            since: now,
            until: now + length,
            until_ns: self
                .clock(at)
                .saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX)),
        };
        if self.blocks.insert(ip, block).is_none() {
            self.block_count.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Lifts a block and resets the address's quota in every policy.
    /// Lifts a block here and, with a store, across the fleet (published
    /// even when this proxy never had the block: another may).
    pub fn unblock(&self, ip: IpAddr) -> Option<Block> {
        let removed = self.remove_block(ip);
        self.publish(BlockEvent::Unblock {
            ip: client_unit(ip),
        });
        removed
    }

    /// Block-list changes are shared through a store.
    pub fn shares_blocks(&self) -> bool {
        self.store.configured.load(Ordering::Relaxed)
    }

    fn remove_block(&self, ip: IpAddr) -> Option<Block> {
        let ip = client_unit(ip);
        let removed = self.blocks.remove(&ip).map(|(_, b)| b);
        if removed.is_some() {
            self.block_count.fetch_sub(1, Ordering::Relaxed);
            let key = ip_key(ip);
            for s in self.live() {
                s.reset(key);
            }
            tracing::info!(%ip, "block lifted");
        }
        removed
    }

    /// Current blocks, soonest to expire first.
    pub fn blocks(&self) -> Vec<Block> {
        let now = self.clock(Instant::now());
        let mut v: Vec<Block> = self
            .blocks
            .iter()
            .filter(|b| b.until_ns > now)
            .map(|b| b.value().clone())
            .collect();
        v.sort_by_key(|b| b.until_ns);
        v
    }

    /// The address's block, if it has a live one.
    pub fn blocked(&self, ip: IpAddr) -> Option<Block> {
        let now = self.clock(Instant::now());
        self.blocks
            .get(&client_unit(ip))
            .filter(|b| b.until_ns > now)
            .map(|b| b.value().clone())
    }

    pub fn block_count(&self) -> usize {
        self.block_count.load(Ordering::Relaxed)
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

    /// Sweeps every `every` until the task is dropped.
    pub async fn run_sweeper(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep();
        }
    }
}

/// Formats the `RateLimit` field for a quota: `"name";r=R;t=T`. `R` is
/// capped at the advertised quota (`q`, the rate per second): a burst larger
/// than the rate never shows as more than `q` left.
pub fn ratelimit_header(policy: &str, quota: u32, verdict: &Verdict) -> HeaderValue {
    let t = verdict.reset_ns.div_ceil(1_000_000_000);
    let r = verdict.remaining.min(quota);
    HeaderValue::from_str(&format!("\"{policy}\";r={r};t={t}"))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

/// Whole seconds a refused client should wait (at least 1).
pub fn retry_after_secs(verdict: &Verdict) -> u64 {
    verdict.retry_after_ns.div_ceil(1_000_000_000).max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn policies(toml_limits: &str) -> Vec<RateLimitPolicy> {
        let text = format!(
            "default_region = \"a\"\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n{toml_limits}"
        );
        edgesteer_config::load_toml(&text).unwrap().1.rate_limits
    }

    #[test]
    fn state_survives_reload_only_while_the_policy_is_unchanged() {
        let limiter = Limiter::new();
        let v1 = policies("[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 5\n");
        let b1 = limiter.bind(&v1);
        let headers = HeaderMap::new();
        let req = Request {
            client: "192.0.2.1".parse().unwrap(),
            host: None,
            path: "/",
            headers: &headers,
        };
        let now = Instant::now();
        let allowed = |b: &Bound, p: &[RateLimitPolicy]| {
            (0..10)
                .filter(|_| matches!(limiter.evaluate(b, p, &req, now), Outcome::Allowed(_)))
                .count()
        };
        assert_eq!(allowed(&b1, &v1), 5);
        // Same policy (another table version, e.g. a weight changed): same state.
        let b2 = limiter.bind(&v1);
        assert!(Arc::ptr_eq(&b1.states[0], &b2.states[0]));
        assert_eq!(allowed(&b2, &v1), 0);
        // A new rate: fresh state.
        let v3 = policies("[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 7\n");
        let b3 = limiter.bind(&v3);
        assert_eq!(allowed(&b3, &v3), 7);
        // Dropped tables release their state.
        drop((b1, b2));
        assert_eq!(limiter.live().len(), 1);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_v4_spellings_agree() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(v4), ip_key(mapped));
        assert_eq!(client_unit(mapped), v4);
        // Blocks follow the same unit.
        let limiter = Limiter::new();
        assert!(limiter.block(
            mapped,
            "admin",
            "t".into(),
            Duration::from_secs(9),
            Instant::now()
        ));
        assert!(limiter.blocked(v4).is_some());
        assert!(limiter.block(
            a,
            "admin",
            "t".into(),
            Duration::from_secs(9),
            Instant::now()
        ));
        assert!(limiter.blocked(b).is_some());
        assert!(limiter.blocked(c).is_none());
        assert!(limiter.unblock(b).is_some());
        assert!(limiter.blocked(a).is_none());
    }

    #[test]
    fn block_changes_queue_for_the_fleet_newest_kept() {
        let limiter = Limiter::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        // No store: nothing to publish.
        limiter.block(
            a,
            "admin",
            "x".into(),
            Duration::from_secs(9),
            Instant::now(),
        );
        assert!(limiter.take_outbox().is_empty());
        limiter.expect_store(Duration::from_millis(50));
        limiter.block(
            a,
            "admin",
            "y".repeat(1000),
            Duration::from_secs(9),
            Instant::now(),
        );
        assert_eq!(limiter.blocked(a).unwrap().reason.len(), MAX_REASON);
        // A lift is published even when this proxy does not hold the block.
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.unblock(b).is_none());
        let out = limiter.take_outbox();
        assert!(matches!(out[0], BlockEvent::Block { ip, .. } if ip == a));
        assert_eq!(out[1], BlockEvent::Unblock { ip: b });
        // Past the cap the oldest go, the newest stay.
        for _ in 0..MAX_OUTBOX {
            limiter.unblock(a);
        }
        limiter.unblock(b);
        let out = limiter.take_outbox();
        assert_eq!(out.len(), MAX_OUTBOX);
        assert_eq!(out.last(), Some(&BlockEvent::Unblock { ip: b }));
        // Applied from the stream: the same list, nothing re-published.
        limiter.apply_remote(BlockEvent::Block {
            ip: b,
            policy: "ip".into(),
            reason: "fleet".into(),
            until: SystemTime::now() + Duration::from_secs(60),
        });
        assert!(limiter.blocked(b).is_some());
        assert_eq!(limiter.block_count(), 1);
        limiter.apply_remote(BlockEvent::Unblock { ip: b });
        assert!(limiter.blocked(b).is_none());
        assert_eq!(limiter.block_count(), 0);
        assert!(limiter.take_outbox().is_empty());
    }

    #[test]
    fn blocks_apply_to_every_request_and_lift() {
        let limiter = Limiter::new();
        let p = policies("[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 5\n");
        let b = limiter.bind(&p);
        let headers = HeaderMap::new();
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let req = Request {
            client,
            host: None,
            path: "/",
            headers: &headers,
        };
        let now = Instant::now();
        limiter.block(client, "admin", "test".into(), Duration::from_secs(60), now);
        assert_eq!(
            limiter.evaluate(&b, &p, &req, now),
            Outcome::Blocked { retry_after_s: 60 }
        );
        assert_eq!(limiter.blocks().len(), 1);
        assert!(limiter.unblock(client).is_some());
        assert!(matches!(
            limiter.evaluate(&b, &p, &req, now),
            Outcome::Allowed(_)
        ));
        assert!(limiter.unblock(client).is_none());
    }
}
