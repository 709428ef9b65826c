//! What a replica of a shared store does beyond a single service: catch up
//! with the versions other replicas committed before every write, share
//! what its proxies said (fleet entries, stats reports) through the store,
//! and know whether it runs the rollout controller.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::keys::redact;
use crate::state::Control;
use crate::store::StoreError;

/// How often shared keys of forgotten proxies are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A fleet entry as replicas share it, with when it was written.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedEntry {
    entry: edgesteer_control_api::api::FleetEntry,
    at_ms: u64,
}

impl Control {
    /// Takes the write lock, then adopts what other replicas committed, so
    /// an edit is made on the newest version. 503 when the store cannot
    /// be read.
    pub(crate) async fn write_guard(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ApiError> {
        let guard = self.write_lock.lock().await;
        if self.store.follow_needed() {
            self.catch_up().await.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    format!(
                        "cannot read the newest version from the store: {e}; nothing was changed"
                    ),
                )
            })?;
        }
        Ok(guard)
    }

    /// Adopts the versions the store has after this replica's newest (call
    /// with the write lock held).
    pub(crate) async fn catch_up(&self) -> Result<usize, StoreError> {
        let after = self.latest().map_or(0, |r| r.version);
        let records = self.store.load_after(after).await?;
        let mut adopted = 0;
        for r in records {
            let next = self.latest().map_or(1, |l| l.version + 1);
            if r.version != next {
                continue;
            }
            let r = Arc::new(redact(r));
            self.versions.push(r.clone());
            self.current.send_replace(Some(r.clone()));
            adopted += 1;
            tracing::info!(version = r.version, actor = %r.audit.actor, "version from another replica adopted");
        }
        Ok(adopted)
    }

    /// Shares a proxy's fleet entry with the other replicas (in the
    /// background; a single-replica store keeps nothing).
    pub(crate) fn share_fleet(self: &Arc<Self>, proxy: &str) {
        if !self.store.follow_needed() {
            return;
        }
        let Some(entry) = self.fleet.entry(proxy) else {
            return;
        };
        let shared = SharedEntry {
            entry,
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let (c, proxy) = (self.clone(), proxy.to_string());
        if let Ok(json) = serde_json::to_vec(&shared) {
            tokio::spawn(async move { c.store.publish("fleet", &proxy, json).await });
        }
    }

    /// Shares a stats report with the other replicas (the leader's
    /// rollout gates count it).
    pub(crate) fn share_stats(self: &Arc<Self>, report: &edgesteer_control_api::api::StatsReport) {
        if !self.store.follow_needed() {
            return;
        }
        let c = self.clone();
        let proxy = report.proxy.clone();
        if let Ok(json) = serde_json::to_vec(report) {
            tokio::spawn(async move { c.store.publish("stats", &proxy, json).await });
        }
    }

    /// The fleet as every replica knows it: this one's register, plus the
    /// proxies other replicas heard from (within the fleet expiry).
    pub(crate) async fn whole_fleet(&self) -> Vec<edgesteer_control_api::api::FleetEntry> {
        let mut list = self.fleet.list();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut others: Vec<SharedEntry> = self
            .store
            .shared("fleet")
            .await
            .iter()
            .filter_map(|j| serde_json::from_slice(j).ok())
            .collect();
        // Newest first, so the freshest word on a proxy wins.
        others.sort_by_key(|s| std::cmp::Reverse(s.at_ms));
        for s in others {
            let ago = now.saturating_sub(s.at_ms);
            if ago > self.fleet.expiry_ms() || list.iter().any(|e| e.proxy == s.entry.proxy) {
                continue;
            }
            list.push(edgesteer_control_api::api::FleetEntry {
                last_seen_ms_ago: Some(ago),
                ..s.entry
            });
        }
        list.sort_by(|a, b| a.proxy.cmp(&b.proxy));
        list
    }

    /// Every [`SWEEP_EVERY`], deletes the keys this replica shared for
    /// proxies its fleet register no longer lists (expired), so a shared
    /// store holds the fleet that is, not every proxy that ever was.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>) {
        let c = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(c) = c.upgrade() else { return };
                let keep: HashSet<String> = c.fleet.list().into_iter().map(|e| e.proxy).collect();
                c.store.retain_shared("fleet", &keep).await;
                c.store.retain_shared("stats", &keep).await;
            }
        });
    }

    /// Whether this replica runs the rollout controller.
    pub fn is_leader(&self) -> bool {
        self.store.is_leader()
    }

    /// This replica's name in a shared store, if any.
    pub fn replica(&self) -> Option<&str> {
        self.store.replica()
    }
}
