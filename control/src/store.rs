//! Durable storage of table versions. The service holds everything in
//! memory and writes through a [`Store`] before acknowledging a write; the
//! trait is small so that etcd or PostgreSQL can stand in for the embedded
//! [`FileStore`] without touching the API.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use edgesteer_control_api::api::{Audit, VersionRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt version file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("version {0} already exists")]
    Conflict(u64),
    #[error("store {path} is in use by another config service (its .lock is held: {reason}); stop that one, or give this one its own --data")]
    Locked { path: PathBuf, reason: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A write was sent but not confirmed (a timeout, a lost connection):
    /// it may have been stored.
    #[error("the store did not confirm the write: {0}")]
    Unconfirmed(String),
    #[error("not the rollout controller: {0}")]
    NotLeader(String),
    #[error("the version is {bytes} bytes; the store takes at most {limit}")]
    TooLarge { bytes: usize, limit: usize },
}

/// A durable, append-only log of versions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every stored version, oldest first.
    async fn load(&self) -> Result<Vec<VersionRecord>, StoreError>;
    /// Stores `record` durably; must fail if its version already exists.
    async fn append(&self, record: &VersionRecord) -> Result<(), StoreError>;
    /// [`Store::append`] for the rollout controller: a shared store commits
    /// it only while this replica holds the controller's lease (checked in
    /// the same transaction); otherwise [`StoreError::NotLeader`].
    async fn append_as_leader(&self, record: &VersionRecord) -> Result<(), StoreError> {
        self.append(record).await
    }
    /// The store's identity, made once when the store was created. A new
    /// epoch tells proxies that versions started again (a wiped or new
    /// store), so a lower version than theirs is still the newest.
    async fn epoch(&self) -> Result<String, StoreError>;

    /// The versions after `version`, oldest first: what other writers (other
    /// replicas sharing the store) committed since this one last looked.
    async fn load_after(&self, version: u64) -> Result<Vec<VersionRecord>, StoreError> {
        Ok(self
            .load()
            .await?
            .into_iter()
            .filter(|r| r.version > version)
            .collect())
    }

    /// For a store shared by several replicas: a signal each time another
    /// may have written (the service then catches up with
    /// [`Store::load_after`]). `None`: this process is the only writer.
    fn follow(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }

    /// Whether other writers may share the store (then every write first
    /// catches up with [`Store::load_after`]).
    fn follow_needed(&self) -> bool {
        false
    }

    /// Whether this replica runs the rollout controller (one per store).
    fn is_leader(&self) -> bool {
        true
    }

    /// This replica's name, for audit records of the controller's writes.
    fn replica(&self) -> Option<&str> {
        None
    }

    /// Shares what this replica heard from a proxy (`kind` `fleet`: its
    /// fleet entry; `stats`: a stats report) with the other replicas.
    /// Best effort; a single-replica store keeps nothing.
    async fn publish(&self, _kind: &str, _proxy: &str, _json: Vec<u8>) {}

    /// Deletes this replica's shared keys of `kind` for proxies not in
    /// `keep` (the ones it has forgotten).
    async fn retain_shared(&self, _kind: &str, _keep: &std::collections::HashSet<String>) {}

    /// Every replica's shared fleet entries.
    async fn shared(&self, _kind: &str) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// Stats reports other replicas received, as they arrive.
    fn remote_stats(&self) -> Option<tokio::sync::mpsc::Receiver<Vec<u8>>> {
        None
    }
}

/// A fresh epoch id: not a secret, only different for every store made.
pub(crate) fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:016x}{:08x}", nanos as u64, std::process::id())
}

/// Whether `text` is an epoch as [`new_epoch`] makes them (24 hex digits):
/// not empty, not cut short.
fn whole_epoch(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The epoch of the store in `dir`, made (and written atomically: temp
/// file, fsync, rename, directory fsync) when there is none. An empty or
/// cut-short file (a crash while an older version wrote it in place) is
/// made again if the store holds no version yet; with versions it is an
/// error saying what to do, since a new epoch tells every proxy that the
/// numbering started again.
fn epoch_of(dir: &Path) -> Result<String, StoreError> {
    let path = dir.join("epoch");
    match std::fs::read_to_string(&path) {
        Ok(e) if whole_epoch(e.trim()) => return Ok(e.trim().to_string()),
        Ok(e) => {
            if holds_versions(dir)? {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!(
                        "the epoch file is {} but the store holds versions; write the store's epoch back into it (the `epoch` of `edgesteer ctl get`, or of a proxy's --cache file), or delete the file to give the store a new epoch (proxies then follow this store's versions as a new history)",
                        if e.trim().is_empty() { "empty".to_string() } else { format!("cut short ({:?})", e.trim()) }
                    ),
                });
            }
            tracing::warn!(path = %path.display(), "the store's epoch file is empty or cut short and the store holds no version; making a new epoch");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let epoch = new_epoch();
    let tmp = dir.join(format!(".tmp-epoch-{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(epoch.as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(epoch)
}

/// Whether `dir` holds a version file.
fn holds_versions(dir: &Path) -> Result<bool, StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('v') && name.ends_with(".json") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One JSON file per version in a directory, written atomically (temp file,
/// fsync, hard link to the version's name, fsync of the directory), so a
/// kill -9 at any moment leaves either the whole version or none of it, and
/// an existing version file is never replaced. The directory is locked
/// (`.lock`, an exclusive advisory lock held while the store is open), so
/// two services cannot write the same store.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Holds the directory's lock for as long as the store lives.
    _lock: std::sync::Arc<std::fs::File>,
}

impl FileStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if let Err(e) = lock.try_lock() {
            return Err(StoreError::Locked {
                path: dir,
                reason: e.to_string(),
            });
        }
        Ok(FileStore {
            dir,
            _lock: std::sync::Arc::new(lock),
        })
    }

    fn path_of(&self, version: u64) -> PathBuf {
        self.dir.join(format!("v{version:010}.json"))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[async_trait]
impl Store for FileStore {
    async fn epoch(&self) -> Result<String, StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || epoch_of(&dir))
            .await
            .map_err(|e| StoreError::Corrupt {
                path: self.dir.join("epoch"),
                reason: format!("epoch reader panicked: {e}"),
            })?
    }

    async fn load(&self) -> Result<Vec<VersionRecord>, StoreError> {
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(&dir).map_err(io(&dir))?;
            for entry in entries {
                let path = entry.map_err(io(&dir))?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // Leftover temp files are writes that never committed.
                if !(name.starts_with('v') && name.ends_with(".json")) {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                let rec: VersionRecord =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                out.push(rec);
            }
            out.sort_by_key(|r| r.version);
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Corrupt {
            path: self.dir.clone(),
            reason: format!("loader panicked: {e}"),
        })?;
        loaded
    }

    async fn append(&self, record: &VersionRecord) -> Result<(), StoreError> {
        let path = self.path_of(record.version);
        let dir = self.dir.clone();
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let version = record.version;
        tokio::task::spawn_blocking(move || {
            if path.exists() {
                return Err(StoreError::Conflict(version));
            }
            let tmp = dir.join(format!(".tmp-v{version:010}-{}", std::process::id()));
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            let written = f.write_all(&bytes).and_then(|()| f.sync_all());
            drop(f);
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(&tmp)(e));
            }
            // A hard link creates the version's name only if it is free, so
            // an existing version is never replaced (a rename would).
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::Conflict(version))
                }
                Err(e) => return Err(io(&path)(e)),
                Ok(()) => {}
            }
            if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
                // Not durable: take the version back, so the write fails
                // cleanly and the next one can use the same number (leaving
                // it would wedge every later commit on a conflict).
                let _ = std::fs::remove_file(&path);
                return Err(io(&dir)(e));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Corrupt {
            path: self.dir.clone(),
            reason: format!("writer panicked: {e}"),
        })?
    }
}

/// A store that forgets on exit (tests, `--data` unset in the demo).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: tokio::sync::Mutex<Vec<VersionRecord>>,
    epoch: std::sync::OnceLock<String>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self) -> Result<Vec<VersionRecord>, StoreError> {
        Ok(self.records.lock().await.clone())
    }

    async fn append(&self, record: &VersionRecord) -> Result<(), StoreError> {
        let mut r = self.records.lock().await;
        if r.iter().any(|x| x.version == record.version) {
            return Err(StoreError::Conflict(record.version));
        }
        r.push(record.clone());
        Ok(())
    }

    async fn epoch(&self) -> Result<String, StoreError> {
        Ok(self.epoch.get_or_init(new_epoch).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: u64) -> VersionRecord {
        let spec = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
        VersionRecord {
            version: v,
            table: spec,
            audit: Audit {
                actor: "t".into(),
                at_ms: 0,
                at: String::new(),
                action: "replace".into(),
                summary: vec![],
                reason: String::new(),
                restored: None,
            },
        }
    }

    #[tokio::test]
    async fn file_store_round_trips_and_ignores_torn_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store.append(&record(1)).await.unwrap();
        store.append(&record(2)).await.unwrap();
        assert!(matches!(
            store.append(&record(2)).await,
            Err(StoreError::Conflict(2))
        ));
        // A write killed before its rename leaves only a temp file behind.
        std::fs::write(
            dir.path().join(".tmp-v0000000003-42"),
            b"{\"version\": 3, \"tab",
        )
        .unwrap();
        // A second store on the same directory is refused while this one
        // lives; reopened after it is gone, it sees both versions.
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        drop(store);
        let loaded = FileStore::open(dir.path()).unwrap().load().await.unwrap();
        assert_eq!(loaded.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(loaded[1], record(2));
    }

    #[tokio::test]
    async fn a_version_file_is_never_replaced_and_the_epoch_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let epoch = store.epoch().await.unwrap();
        store.append(&record(1)).await.unwrap();
        let first = std::fs::read(dir.path().join("v0000000001.json")).unwrap();
        let mut other = record(1);
        other.audit.reason = "a second writer".into();
        assert!(matches!(
            store.append(&other).await,
            Err(StoreError::Conflict(1))
        ));
        let after = std::fs::read(dir.path().join("v0000000001.json")).unwrap();
        assert_eq!(first, after, "an existing version file was replaced");
        drop(store);
        let again = FileStore::open(dir.path()).unwrap();
        assert_eq!(again.epoch().await.unwrap(), epoch);
        let fresh = tempfile::tempdir().unwrap();
        let other_store = FileStore::open(fresh.path()).unwrap();
        assert_ne!(other_store.epoch().await.unwrap(), epoch);
    }

    #[tokio::test]
    async fn an_empty_epoch_file_is_repaired_or_refused_clearly() {
        // A crash left the file empty before any version was stored: a new
        // epoch is made, written whole, with no temp file left.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("epoch"), b"").unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let epoch = store.epoch().await.unwrap();
        assert!(whole_epoch(&epoch), "{epoch}");
        let on_disk = std::fs::read_to_string(dir.path().join("epoch")).unwrap();
        assert_eq!(on_disk, epoch);
        assert_eq!(store.epoch().await.unwrap(), epoch);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("tmp")), "{names:?}");
        // With versions stored, an empty or cut-short epoch is refused,
        // naming the file and what to do.
        store.append(&record(1)).await.unwrap();
        for broken in ["", "0123abc"] {
            std::fs::write(dir.path().join("epoch"), broken).unwrap();
            let err = store.epoch().await.unwrap_err().to_string();
            assert!(
                err.contains("epoch") && err.contains(&*dir.path().to_string_lossy()),
                "{err}"
            );
            assert!(err.contains("delete the file"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_corrupt_version_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v0000000001.json"), b"not json").unwrap();
        let err = FileStore::open(dir.path())
            .unwrap()
            .load()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("v0000000001.json"), "{err}");
    }
}
