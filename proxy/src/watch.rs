//! The proxy side of live updates: long-poll the config service, validate
//! and compile each new version, swap it in with one `ArcSwap` store, save
//! it as the last good table, and acknowledge applied or rejected.
//!
//! A version that does not compile is never installed: the proxy keeps
//! serving the previous one and reports why. When the service is away the
//! proxy keeps serving and reconnects with capped, jittered backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edgesteer_config::{RoutingTable, TableSpec};
use edgesteer_control_api::api::Ack;
use edgesteer_control_api::client::{Client, Versioned};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};

use crate::steer::Steering;

/// How long one watch request is held open by the service.
const POLL: Duration = Duration::from_secs(25);

/// The last good table as saved on disk.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cached {
    pub version: u64,
    pub table: TableSpec,
    /// The store epoch of `version` (absent in caches from before epochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// Reads a cache file written by [`save_cache`].
pub fn load_cache(path: &Path) -> Option<Cached> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable table cache");
            None
        }
    }
}

/// Writes the cache atomically (temp file + rename), so a crash never
/// leaves half a table behind.
pub fn save_cache(
    path: &Path,
    version: u64,
    epoch: Option<String>,
    table: &TableSpec,
) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d
        }
        None => Path::new("."),
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec(&Cached {
        version,
        table: table.clone(),
        epoch,
    })?;
    // Durable before it is visible: the file's data, then the rename, then
    // the directory entry, so a crash leaves the old table or the new one,
    // never an empty or torn file.
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Applies pushed tables to a running proxy.
pub struct Watcher {
    pub steer: Arc<Steering>,
    pub client: Client,
    /// Name under which this proxy appears in `/v1/fleet`.
    pub name: String,
    pub cache: Option<PathBuf>,
    /// Trusted-proxy CIDRs from the command line, added to every table.
    pub extra_trust: Vec<String>,
    /// The store epoch of the table this proxy started with, if known.
    pub epoch: Option<String>,
}

/// A pushed table with the command line's trusted proxies added,
/// validated and compiled. Compiling reads the files the table names (CA
/// bundles, client certificates and keys): call it off the async runtime.
fn compile_version(
    mut spec: TableSpec,
    extra_trust: &[String],
) -> Result<(TableSpec, RoutingTable), String> {
    spec.client_ip
        .trusted_proxies
        .extend(extra_trust.iter().cloned());
    let table = edgesteer_config::compile(&spec).map_err(|e| e.to_string())?;
    Ok((spec, table))
}

impl Watcher {
    /// Validates, compiles and installs one version on this thread; `Err`
    /// carries the reason for the rejection ack.
    pub fn apply(&self, v: &Versioned) -> Result<(), String> {
        let (spec, table) = compile_version(v.table.clone(), &self.extra_trust)?;
        self.steer.install(v.version, spec, table);
        Ok(())
    }

    /// [`Watcher::apply`] with the compile (and the file reads in it) on
    /// the blocking pool, so the runtime's thread never waits for a disk.
    async fn apply_off_runtime(&self, v: &Versioned) -> Result<(), String> {
        let (table, extra) = (v.table.clone(), self.extra_trust.clone());
        let compiled = tokio::task::spawn_blocking(move || compile_version(table, &extra))
            .await
            .map_err(|e| format!("compiling the table failed: {e}"))?;
        let (spec, table) = compiled?;
        self.steer.install(v.version, spec, table);
        Ok(())
    }

    async fn ack(&self, version: u64, epoch: Option<&str>, result: &Result<(), String>) {
        let ack = Ack {
            proxy: self.name.clone(),
            epoch: epoch.map(str::to_string),
            version,
            status: if result.is_ok() {
                "applied"
            } else {
                "rejected"
            }
            .into(),
            reason: result.as_ref().err().cloned(),
            build: Some(env!("CARGO_PKG_VERSION").to_string()),
        };
        if let Err(e) = self.client.ack(&ack).await {
            tracing::debug!(error = %e, "ack not delivered");
        }
    }
}

/// Where the watch stands: what it asks for, and what this proxy serves.
struct Position {
    /// The newest version seen (applied or rejected): the watch asks for
    /// anything newer.
    after: u64,
    /// The store epoch of `after`.
    epoch: Option<String>,
    /// The store epoch of the version this proxy serves.
    served_epoch: Option<String>,
}

/// Latest version to save as the last good table.
type SaveSlot = tokio::sync::watch::Sender<Option<(u64, Option<String>, TableSpec)>>;

impl Watcher {
    /// The cache is written off the apply path by its own task: the ack
    /// does not wait for the disk, and a burst of pushes that arrives
    /// while a write is in progress coalesces into one more write.
    fn spawn_saver(&self) -> (SaveSlot, tokio::task::JoinHandle<()>) {
        let (save_tx, mut save_rx) = tokio::sync::watch::channel(None);
        let cache = self.cache.clone();
        let saver = tokio::spawn(async move {
            while save_rx.changed().await.is_ok() {
                let latest: Option<(u64, Option<String>, TableSpec)> =
                    save_rx.borrow_and_update().clone();
                if let (Some(path), Some((version, epoch, table))) = (cache.clone(), latest) {
                    let saved = tokio::task::spawn_blocking(move || {
                        save_cache(&path, version, epoch, &table).map_err(|e| (path, e))
                    })
                    .await;
                    if let Ok(Err((path, e))) = saved {
                        tracing::warn!(path = %path.display(), error = %e, "cannot save the last good table");
                    }
                }
            }
        });
        (save_tx, saver)
    }

    /// A version the service pushed: apply (or reject) it, save it, ack it.
    async fn on_version(&self, v: &Versioned, pos: &mut Position, save: &SaveSlot) {
        let new_epoch = (!v.epoch.is_empty()).then(|| v.epoch.clone());
        if pos.epoch.is_some() && new_epoch.is_some() && new_epoch != pos.epoch {
            tracing::warn!(
                version = v.version,
                was = pos.after,
                epoch = %v.epoch,
                was_epoch = ?pos.epoch,
                "the config service's store has a new epoch (wiped or replaced): taking its current version even though it is not higher than ours"
            );
        }
        let result = self.apply_off_runtime(v).await;
        match &result {
            Ok(()) => {
                save.send_replace(Some((v.version, new_epoch.clone(), v.table.clone())));
                pos.served_epoch = new_epoch.clone().or(pos.served_epoch.take());
            }
            Err(reason) => {
                self.steer
                    .metrics
                    .table_applies
                    .with_label_values(&["rejected"])
                    .inc();
                tracing::error!(version = v.version, %reason, "pushed table rejected; the previous table keeps serving");
            }
        }
        self.ack(v.version, new_epoch.as_deref(), &result).await;
        pos.after = v.version;
        pos.epoch = new_epoch.or(pos.epoch.take());
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut pos = Position {
            after: self.steer.current().version,
            epoch: self.epoch.clone(),
            served_epoch: self.epoch.clone(),
        };
        let mut backoff = Duration::from_millis(100);
        let mut down_since: Option<std::time::Instant> = None;
        if pos.after > 0 {
            self.ack(pos.after, pos.epoch.as_deref(), &Ok(())).await;
        }
        let (save_tx, saver) = self.spawn_saver();
        loop {
            let polled = tokio::select! {
                r = self.client.watch(pos.after, pos.epoch.as_deref(), &self.name, POLL) => r,
                _ = shutdown.changed() => break,
            };
            match polled {
                Ok(Some(v)) => {
                    if let Some(t) = down_since.take() {
                        tracing::info!(control = %self.client.base(), after = ?t.elapsed(), "config service reachable again");
                    }
                    backoff = Duration::from_millis(100);
                    self.on_version(&v, &mut pos, &save_tx).await;
                }
                Ok(None) => {
                    // Poll timed out with nothing new: ack what this proxy
                    // really serves (after a rejection, the older version),
                    // never merely the newest it has seen.
                    down_since = None;
                    let served = self.steer.current().version;
                    self.ack(served, pos.served_epoch.as_deref(), &Ok(())).await;
                }
                Err(e) => {
                    if down_since.is_none() {
                        tracing::warn!(error = %e, "config service unreachable; serving the current table and retrying");
                        down_since = Some(std::time::Instant::now());
                    }
                    let jitter = Duration::from_millis(u64::from(std::process::id() % 97));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff + jitter) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Shutting down: let the saver write a pending version, briefly.
        drop(save_tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), saver).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version as the service would push it.
    fn versioned(version: u64, table: TableSpec) -> Versioned {
        Versioned {
            version,
            etag: edgesteer_control_api::api::etag(version),
            table,
            audit: edgesteer_control_api::api::Audit {
                actor: "ops".into(),
                at_ms: 0,
                at: String::new(),
                action: "replace".into(),
                summary: Vec::new(),
                reason: String::new(),
                restored: None,
            },
            epoch: String::new(),
        }
    }

    /// Driven through the watch's own path (`on_version` and its saver
    /// task), so the cache is what the watcher wrote, not the test.
    #[tokio::test]
    async fn a_bad_version_is_rejected_and_the_last_good_one_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache.json");
        let steer = crate::steer::covergen_for_tests();
        let w = Watcher {
            steer: steer.clone(),
            client: Client::new("http://127.0.0.1:9", None),
            name: "t".into(),
            cache: Some(cache.clone()),
            extra_trust: vec!["10.0.0.0/8".into()],
            epoch: None,
        };
        let (save, saver) = w.spawn_saver();
        let mut pos = Position {
            after: 1,
            epoch: None,
            served_epoch: None,
        };
        let mut good = steer.current().spec.as_ref().clone();
        good.regions.get_mut("us-east").unwrap().drain = true;
        let v2 = versioned(2, good.clone());
        w.on_version(&v2, &mut pos, &save).await;
        assert_eq!(steer.current().version, 2);
        // --trust is added to every pushed table.
        assert!(steer
            .current()
            .table
            .is_trusted_proxy("10.1.2.3".parse().unwrap()));

        let mut bad = good;
        bad.regions.get_mut("cn-east").unwrap().failover = vec!["ap-southeast".into()];
        let v3 = versioned(3, bad);
        w.on_version(&v3, &mut pos, &save).await;
        assert_eq!(
            steer.current().version,
            2,
            "a rejected table must not be installed"
        );
        assert_eq!(pos.after, 3, "the watch moves past a rejected version");
        let rejected = steer
            .metrics
            .table_applies
            .with_label_values(&["rejected"])
            .get();
        assert_eq!(rejected, 1);
        // Every save the watcher asked for is on disk once its saver ends.
        drop(save);
        saver.await.unwrap();
        let cached = load_cache(&cache).unwrap();
        assert_eq!(cached.version, 2, "the cache keeps the last good table");
        assert!(cached.table.regions["us-east"].drain);
    }
}
