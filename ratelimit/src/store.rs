//! The shared store's (Redis) status as the syncer reports it: whether
//! global policies may count on it right now, and the figures for metrics
//! and the admin API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use edgesteer_config::ratelimit::{LimitScope, RateLimitPolicy};
use serde::Serialize;

/// The store counts as down when no sync succeeded for this long (or for
/// four sync intervals, if that is longer).
pub const STORE_STALE: Duration = Duration::from_secs(1);

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

impl StoreStatus {
    /// Whether global policies can use the store at `now` (limiter clock).
    #[inline]
    pub fn ok(&self, now: u64) -> bool {
        self.up.load(Ordering::Relaxed)
            && now.saturating_sub(self.last_ok_ns.load(Ordering::Relaxed))
                < self.stale_ns.load(Ordering::Relaxed)
    }

    /// Declares that a store syncer runs every `interval`, the store last
    /// answering at `now` (limiter clock); see `Limiter::expect_store`.
    pub(crate) fn expect(&self, interval: Duration, now: u64) {
        let stale = STORE_STALE.max(interval * 4);
        self.stale_ns.store(
            u64::try_from(stale.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.last_ok_ns.store(now, Ordering::Relaxed);
        self.up.store(true, Ordering::Relaxed);
        self.configured.store(true, Ordering::Relaxed);
    }

    /// Warns when a table has global policies but no store will sync them.
    pub(crate) fn warn_if_unsynced(&self, policies: &[RateLimitPolicy]) {
        if policies.iter().any(|p| p.scope == LimitScope::Global)
            && !self.configured.load(Ordering::Relaxed)
        {
            tracing::warn!("the table has global rate-limit policies but this proxy has no --redis; they act as if the store were down (fail_open: local limits, fail_closed: 503)");
        }
    }

    /// The status at `now` (limiter clock).
    pub(crate) fn snapshot(&self, now: u64) -> StoreSnapshot {
        StoreSnapshot {
            configured: self.configured.load(Ordering::Relaxed),
            up: self.ok(now),
            errors: self.errors.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            block_errors: self.block_errors.load(Ordering::Relaxed),
        }
    }
}
