//! The shared store's (Redis) status as the syncer reports it: whether
//! global policies may count on it right now, and the figures for metrics
//! and the admin API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgesteer_config::ratelimit::{LimitScope, RateLimitPolicy};
use serde::Serialize;

use crate::limiter::Limiter;

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

impl Limiter {
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
}
