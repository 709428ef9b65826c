//! The service's state ([`Control`]): every version in memory, written
//! through a [`Store`], the current one published to watchers, the write
//! tokens, the fleet register and the rollout figures; and the write path
//! (authenticate, `If-Match`, commit).
//!
//! Every write is compiled before it is stored; a table that does not
//! compile never gets a version. Writes are serialised by one async mutex,
//! so versions are dense and `If-Match` is exact.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use edgesteer_config::{compile, diff, ConfigError, TableSpec};
use serde::Deserialize;
use tokio::sync::{watch, Mutex};

use crate::api::etag;
use crate::auth::{bearer, token_name, Token};
use crate::figures::Windows;
use crate::fleet::FleetRegister;
use crate::http::{parse_body, ApiError};
use crate::store::{Audit, Store, StoreError, VersionRecord};

/// Shared state of the service.
pub struct Control {
    store: Arc<dyn Store>,
    /// Held by every write from its `If-Match` check to its commit.
    pub(crate) write_lock: Mutex<()>,
    versions: RwLock<Vec<Arc<VersionRecord>>>,
    current: watch::Sender<Option<Arc<VersionRecord>>>,
    tokens: Vec<Token>,
    pub(crate) fleet: FleetRegister,
    /// Rollout figures per region since its current step began.
    pub(crate) windows: Windows,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored version {version} no longer compiles: {error}")]
    Stored { version: u64, error: ConfigError },
    #[error("seed table does not compile: {0}")]
    Seed(ConfigError),
}

impl Control {
    /// Loads the store; if it is empty and `seed` is given, stores it as version 1.
    pub async fn open(
        store: Arc<dyn Store>,
        tokens: Vec<Token>,
        seed: Option<TableSpec>,
    ) -> Result<Arc<Control>, StartError> {
        let records = store.load().await?;
        if let Some(last) = records.last() {
            compile(&last.table).map_err(|error| StartError::Stored {
                version: last.version,
                error,
            })?;
        }
        let (tx, _) = watch::channel(records.last().cloned().map(Arc::new));
        let control = Arc::new(Control {
            store,
            write_lock: Mutex::new(()),
            versions: RwLock::new(records.into_iter().map(Arc::new).collect()),
            current: tx,
            tokens,
            fleet: FleetRegister::default(),
            windows: Windows::default(),
        });
        if control.latest().is_none() {
            if let Some(seed) = seed {
                compile(&seed).map_err(StartError::Seed)?;
                control
                    .commit("seed", "seed", seed, "initial table".into(), None)
                    .await
                    .map_err(|e| {
                        StartError::Store(StoreError::Corrupt {
                            path: Default::default(),
                            reason: e.message,
                        })
                    })?;
            }
        }
        Ok(control)
    }

    pub fn latest(&self) -> Option<Arc<VersionRecord>> {
        self.current.borrow().clone()
    }

    /// Follows the current version (for the watch long-poll).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<VersionRecord>>> {
        self.current.subscribe()
    }

    /// The current version, or the API's 404 when nothing is stored yet.
    pub(crate) fn current_or_404(&self) -> Result<Arc<VersionRecord>, ApiError> {
        self.latest().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_table",
                "no table has been stored yet",
            )
        })
    }

    /// Version `v`, or the API's 404.
    pub(crate) fn version(&self, v: u64) -> Result<Arc<VersionRecord>, ApiError> {
        self.versions
            .read()
            .ok()
            .and_then(|versions| versions.iter().find(|r| r.version == v).cloned())
            .ok_or_else(|| ApiError::unknown_version(v))
    }

    /// The newest `limit` versions, newest first.
    pub(crate) fn newest(&self, limit: usize) -> Vec<Arc<VersionRecord>> {
        self.versions
            .read()
            .map(|v| v.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// Stores a new version (already compiled by the caller) and pushes it.
    pub(crate) async fn commit(
        &self,
        actor: &str,
        action: &str,
        table: TableSpec,
        reason: String,
        restored: Option<u64>,
    ) -> Result<Arc<VersionRecord>, ApiError> {
        let prev = self.latest();
        let version = prev.as_ref().map_or(1, |p| p.version + 1);
        let summary = match &prev {
            Some(p) => diff::diff(&p.table, &table),
            None => vec!["initial table".into()],
        };
        let now = SystemTime::now();
        let record = VersionRecord {
            version,
            table,
            audit: Audit {
                actor: actor.into(),
                at_ms: now
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                at: humantime::format_rfc3339_millis(now).to_string(),
                action: action.into(),
                summary,
                reason,
                restored,
            },
        };
        self.store.append(&record).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_failed",
                format!("the change was not stored: {e}"),
            )
        })?;
        let record = Arc::new(record);
        if let Ok(mut v) = self.versions.write() {
            v.push(record.clone());
        }
        self.current.send_replace(Some(record.clone()));
        tracing::info!(
            version,
            actor,
            action,
            changes = record.audit.summary.len(),
            "table version committed"
        );
        Ok(record)
    }

    /// The actor (token name) of a write.
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let presented = bearer(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "writes need `Authorization: Bearer <token>`",
            )
        })?;
        token_name(&self.tokens, presented).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
        })
    }

    /// The common start of every write: the actor from the bearer token,
    /// then the JSON body (size-limited, unknown fields refused, paths named).
    pub(crate) fn write_request<T: for<'de> Deserialize<'de>>(
        &self,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<(String, T), ApiError> {
        let actor = self.authenticate(headers)?;
        Ok((actor, parse_body(body)?))
    }

    /// Refuses a write whose `If-Match` is not the current version's ETag.
    pub(crate) fn check_if_match(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let current = self.latest().map(|r| etag(r.version));
        if want.trim() == "*" || current.as_deref() == Some(want.trim()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale_version",
                format!("If-Match {want} does not match the current version {}; re-read the table and retry", current.unwrap_or_else(|| "(none)".into())),
            ))
        }
    }
}
