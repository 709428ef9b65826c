//! The shared store's (Redis) status as the syncer reports it: whether
//! global policies may count on it right now, and the figures for metrics
//! and the admin API.
//!
//! On a Redis Cluster the answer is per key: each of the 256 key buckets
//! (`slots.rs`) has its own last good sync, so while one master is lost
//! only the keys on its slots get their policy's fail mode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use edgesteer_config::ratelimit::{LimitScope, RateLimitPolicy};
use serde::Serialize;

use crate::slots::{bucket_of, BUCKETS};

/// The store counts as down when no sync succeeded for this long (or for
/// four sync intervals, if that is longer).
pub const STORE_STALE: Duration = Duration::from_secs(1);

/// Shared-store (Redis) health as seen by the syncer.
pub struct StoreStatus {
    pub(crate) configured: AtomicBool,
    pub(crate) stale_ns: AtomicU64,
    pub(crate) up: AtomicBool,
    pub(crate) last_ok_ns: AtomicU64,
    /// A Redis Cluster: keys also need their bucket's master.
    pub(crate) sharded: AtomicBool,
    /// Per bucket, when its master last answered (limiter clock).
    pub(crate) bucket_ok_ns: [AtomicU64; BUCKETS],
    pub errors: AtomicU64,
    pub syncs: AtomicU64,
    /// Rounds whose block-list sharing failed (limits were still synced).
    pub block_errors: AtomicU64,
    /// Microseconds the last round took.
    pub(crate) round_us: AtomicU64,
    /// The last error, and when (for the admin API).
    last_error: Mutex<Option<(String, SystemTime)>>,
    /// The cluster as the syncer last saw it.
    cluster: Mutex<Option<ClusterStatus>>,
}

impl Default for StoreStatus {
    fn default() -> Self {
        StoreStatus {
            configured: AtomicBool::new(false),
            stale_ns: AtomicU64::new(0),
            up: AtomicBool::new(false),
            last_ok_ns: AtomicU64::new(0),
            sharded: AtomicBool::new(false),
            bucket_ok_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            block_errors: AtomicU64::new(0),
            round_us: AtomicU64::new(0),
            last_error: Mutex::new(None),
            cluster: Mutex::new(None),
        }
    }
}

/// The store's status at one moment, for metrics and the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct StoreSnapshot {
    /// A `--redis` URL was given.
    pub configured: bool,
    /// Global policies can use the store now (on a cluster: for every key).
    pub up: bool,
    pub errors: u64,
    pub syncs: u64,
    /// Rounds whose block-list sharing failed.
    pub block_errors: u64,
    /// How long the last sync round took, in milliseconds.
    pub last_round_ms: f64,
    /// The last sync error (credentials masked), if any.
    pub last_error: Option<String>,
    /// Seconds since `last_error`.
    pub last_error_age_s: Option<u64>,
    /// A Redis Cluster: its nodes, slots and which keys are affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// A Redis Cluster as the syncer last saw it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
    /// Masters that serve slots and are not marked failed.
    pub masters: usize,
    /// Slots served by such a master (16384 when the cluster is whole).
    pub slots_covered: u32,
    /// Slot ranges no live master serves (`0-999`).
    pub slots_unserved: Vec<String>,
    /// Key buckets (of 256) whose master has not answered for the stale
    /// time: their keys use the policy's fail mode now.
    pub buckets_down: usize,
    /// The node whose `CLUSTER NODES` this is.
    pub seen_from: String,
}

/// One cluster node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    /// `host:port`.
    pub addr: String,
    pub id: String,
    /// `master` or `replica`.
    pub role: &'static str,
    /// A replica's master (`host:port`).
    pub replica_of: Option<String>,
    pub slots: Vec<String>,
    /// The cluster marks it failed (`fail`).
    pub failed: bool,
    /// Masters: answered this proxy's last sync or probe.
    pub up: Option<bool>,
    /// Masters: the slowest command of the last round, in milliseconds.
    pub sync_ms: Option<f64>,
    /// Masters: failed commands since start.
    pub errors: u64,
    pub last_error: Option<String>,
}

impl StoreStatus {
    /// Whether global policies can use the store at `now` (limiter clock).
    #[inline]
    pub fn ok(&self, now: u64) -> bool {
        self.up.load(Ordering::Relaxed)
            && now.saturating_sub(self.last_ok_ns.load(Ordering::Relaxed))
                < self.stale_ns.load(Ordering::Relaxed)
    }

    /// Whether `key` can use the store at `now`: the store is up and, on a
    /// cluster, the master of the key's bucket answered within the stale
    /// time. Atomics only.
    #[inline]
    pub fn ok_for(&self, key: u64, now: u64) -> bool {
        self.ok(now)
            && (!self.sharded.load(Ordering::Relaxed)
                || self.bucket_ok_ns.get(bucket_of(key)).is_some_and(|t| {
                    now.saturating_sub(t.load(Ordering::Relaxed))
                        < self.stale_ns.load(Ordering::Relaxed)
                }))
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
        for b in &self.bucket_ok_ns {
            b.store(now, Ordering::Relaxed);
        }
        self.up.store(true, Ordering::Relaxed);
        self.configured.store(true, Ordering::Relaxed);
    }

    /// Buckets whose master has not answered for the stale time.
    fn buckets_down(&self, now: u64) -> usize {
        let stale = self.stale_ns.load(Ordering::Relaxed);
        self.bucket_ok_ns
            .iter()
            .filter(|t| now.saturating_sub(t.load(Ordering::Relaxed)) >= stale)
            .count()
    }

    /// Records a sync error for the admin API (never with credentials).
    pub(crate) fn note_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((message, SystemTime::now()));
    }

    pub(crate) fn note_round(&self, took: Duration) {
        self.round_us.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn set_cluster(&self, status: ClusterStatus) {
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
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
        let sharded = self.sharded.load(Ordering::Relaxed);
        let buckets_down = if sharded { self.buckets_down(now) } else { 0 };
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cluster = sharded.then(|| {
            let mut c = self
                .cluster
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            c.buckets_down = buckets_down;
            c
        });
        StoreSnapshot {
            configured: self.configured.load(Ordering::Relaxed),
            up: self.ok(now) && buckets_down == 0,
            errors: self.errors.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            block_errors: self.block_errors.load(Ordering::Relaxed),
            last_round_ms: self.round_us.load(Ordering::Relaxed) as f64 / 1_000.0,
            last_error_age_s: last_error
                .as_ref()
                .map(|(_, at)| at.elapsed().map_or(0, |d| d.as_secs())),
            last_error: last_error.map(|(m, _)| m),
            cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_cluster_only_keys_of_stale_buckets_are_down() {
        let s = StoreStatus::default();
        let interval = Duration::from_millis(50);
        s.expect(interval, 1_000);
        s.sharded.store(true, Ordering::Relaxed);
        let stale = 1_000_000_000; // STORE_STALE > 4 x 50 ms
        let (a, b) = (0x0100_0000_0000_0000u64, 0x0200_0000_0000_0000u64);
        // Bucket 1 keeps answering, bucket 2 stops.
        let later = 1_000 + stale + 5;
        s.last_ok_ns.store(later, Ordering::Relaxed);
        s.bucket_ok_ns[1].store(later, Ordering::Relaxed);
        assert!(s.ok_for(a, later));
        assert!(!s.ok_for(b, later), "bucket 2 went stale");
        // Just before the stale time it still counts as up.
        assert!(s.ok_for(b, 1_000 + stale - 1));
        let snap = s.snapshot(later);
        assert!(!snap.up);
        assert_eq!(snap.cluster.map(|c| c.buckets_down), Some(BUCKETS - 1));
        // A single Redis has no buckets: one answer covers every key.
        s.sharded.store(false, Ordering::Relaxed);
        assert!(s.ok_for(b, later));
        assert!(s.snapshot(later).up);
        // And the whole store down is down for every key.
        s.up.store(false, Ordering::Relaxed);
        assert!(!s.ok_for(a, later));
    }
}
