//! The versions a service keeps in memory: the newest [`DEFAULT_WINDOW`]
//! (the store keeps every one). History, diff, rollback and
//! `GET /v1/versions/{N}` read from here; a version older than the window
//! is answered with a clear `410 version_out_of_window` naming where it is
//! still stored, never with a wrong "no such version".

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::store::VersionRecord;

/// Versions kept in memory unless told otherwise.
pub const DEFAULT_WINDOW: usize = 1000;

/// The newest versions, oldest first, at most `cap` of them.
#[derive(Debug)]
pub(crate) struct Window {
    versions: RwLock<VecDeque<Arc<VersionRecord>>>,
    cap: AtomicUsize,
}

impl Window {
    /// The newest [`DEFAULT_WINDOW`] of `records` (oldest first).
    pub(crate) fn new(records: Vec<VersionRecord>) -> Window {
        let w = Window {
            versions: RwLock::new(VecDeque::new()),
            cap: AtomicUsize::new(DEFAULT_WINDOW),
        };
        let skip = records.len().saturating_sub(DEFAULT_WINDOW);
        for r in records.into_iter().skip(skip) {
            w.push(Arc::new(r));
        }
        w
    }

    /// Keeps at most `cap` versions (at least 1) from now on.
    pub(crate) fn set_cap(&self, cap: usize) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
        self.trim();
    }

    fn trim(&self) {
        let cap = self.cap.load(Ordering::Relaxed);
        if let Ok(mut v) = self.versions.write() {
            while v.len() > cap {
                v.pop_front();
            }
        }
    }

    /// Adds `r` if it is newer than the newest kept (never twice: the
    /// follower may have adopted it already); drops the oldest past the cap.
    pub(crate) fn push(&self, r: Arc<VersionRecord>) {
        if let Ok(mut v) = self.versions.write() {
            if v.back().is_none_or(|l| l.version < r.version) {
                v.push_back(r);
            }
        }
        self.trim();
    }

    /// Version `v`: 404 if it never existed, 410 if it is older than the
    /// window (naming where it is still stored).
    pub(crate) fn get(&self, v: u64) -> Result<Arc<VersionRecord>, ApiError> {
        let Ok(versions) = self.versions.read() else {
            return Err(ApiError::unknown_version(v));
        };
        if let Some(r) = versions.iter().find(|r| r.version == v) {
            return Ok(r.clone());
        }
        match versions.front() {
            Some(oldest) if v >= 1 && v < oldest.version => Err(ApiError::new(
                StatusCode::GONE,
                "version_out_of_window",
                format!(
                    "version {v} is older than the {} newest versions this service keeps in memory (the oldest kept is {}); it is still in the store (a file store: v{v:010}.json in its --data directory; etcd: the key PREFIX/versions/{v:010}); roll back to a newer version, or restore it with PUT /v1/table",
                    versions.len(),
                    oldest.version
                ),
            )
            .at("version", format!("older than {}", oldest.version))),
            _ => Err(ApiError::unknown_version(v)),
        }
    }

    /// The newest `limit` versions, newest first.
    pub(crate) fn newest(&self, limit: usize) -> Vec<Arc<VersionRecord>> {
        self.versions
            .read()
            .map(|v| v.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// The newest `limit` versions, oldest first.
    pub(crate) fn recent(&self, limit: usize) -> Vec<Arc<VersionRecord>> {
        let mut out = self.newest(limit);
        out.reverse();
        out
    }

    /// How many versions are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.versions.read().map_or(0, |v| v.len())
    }
}
