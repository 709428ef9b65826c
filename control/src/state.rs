//! The service's state ([`Control`]): every version in memory, written
//! through a [`Store`], the current one published to watchers, the write
//! tokens, the fleet register and the rollout figures; and the write path
//! (authenticate, `If-Match`, commit).
//!
//! Every write is compiled before it is stored; a table that does not
//! compile never gets a version. Writes are serialised by one async mutex,
//! so versions are dense and `If-Match` is exact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::keys::{hash_keys, redact};
use axum::http::{header, HeaderMap, StatusCode};
use edgesteer_config::{compile, diff, ConfigError, TableSpec};
use tokio::sync::{watch, Mutex};

use edgesteer_control_api::api::etag;
use edgesteer_control_api::auth::{authorize, bearer, Access, Token};
use edgesteer_listener::ConnStats;

use crate::figures::Windows;
use crate::fleet::FleetRegister;
use crate::http::ApiError;
use crate::store::{Audit, Store, StoreError, VersionRecord};

/// Shared state of the service.
pub struct Control {
    pub(crate) store: Arc<dyn Store>,
    /// Held by every write from its `If-Match` check to its commit.
    pub(crate) write_lock: Mutex<()>,
    /// The newest versions (the store keeps every one).
    pub(crate) versions: crate::history::Window,
    /// The current version's compiled table, for explain.
    pub(crate) compiled: crate::compiled::CompiledCache,
    pub(crate) current: watch::Sender<Option<Arc<VersionRecord>>>,
    tokens: Vec<Token>,
    /// The store's epoch, sent with every version.
    pub(crate) epoch: String,
    /// Requests refused for a missing or unknown token.
    pub(crate) unauthenticated: AtomicU64,
    /// Requests refused because the token's role may not do that.
    pub(crate) forbidden: AtomicU64,
    pub(crate) fleet: FleetRegister,
    /// Rollout figures per region since its current step began.
    pub(crate) windows: Windows,
    /// What the console draws: recent traffic and the fleet's health.
    pub(crate) live: crate::live::Live,
    /// Each proxy's requests by country and pin, for the impact preview.
    pub(crate) traffic: crate::traffic::Traffic,
    /// The fleet's per-key rates by rate-limit tier, for the preview's 429s.
    pub(crate) limit_model: crate::limit_model::LimitModel,
    /// The geo database the console's explain uses (`--geo-db`).
    geo: std::sync::OnceLock<Arc<edgesteer_geo::GeoDb>>,
    /// The listener's connection counters (see [`edgesteer_listener`]).
    pub conn_stats: Arc<ConnStats>,
    /// Set when the service shuts down: open watches answer at once.
    pub(crate) closing: watch::Sender<bool>,
    /// Client-certificate names (mTLS) that act with the `proxy` role.
    cert_proxies: std::sync::OnceLock<Vec<String>>,
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
        let epoch = store.epoch().await?;
        if let Some(last) = records.last() {
            compile(&last.table).map_err(|error| StartError::Stored {
                version: last.version,
                error,
            })?;
        }
        // Versions stored before keys were hashed on the way in are hashed
        // here, so no read ever shows a plain key.
        // Only the newest are kept in memory (the store keeps every one).
        let skip = records.len().saturating_sub(crate::history::DEFAULT_WINDOW);
        let records: Vec<VersionRecord> = records.into_iter().skip(skip).map(redact).collect();
        let (tx, _) = watch::channel(records.last().cloned().map(Arc::new));
        let control = Arc::new(Control {
            store,
            write_lock: Mutex::new(()),
            versions: crate::history::Window::new(records),
            compiled: Default::default(),
            current: tx,
            tokens,
            epoch,
            unauthenticated: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            fleet: FleetRegister::default(),
            windows: Windows::default(),
            live: crate::live::Live::default(),
            traffic: crate::traffic::Traffic::default(),
            limit_model: crate::limit_model::LimitModel::default(),
            geo: std::sync::OnceLock::new(),
            conn_stats: Arc::default(),
            closing: watch::channel(false).0,
            cert_proxies: std::sync::OnceLock::new(),
        });
        if control.store.follow_needed() {
            control.spawn_sweeper();
        }
        control.follow_replicas();
        // Under the write lock, like every write: the follower started above
        // may be adopting versions (another replica's seed) meanwhile.
        let _guard = control.write_lock.lock().await;
        if control.store.follow_needed() {
            control.catch_up().await?;
        }
        if control.latest().is_none() {
            if let Some(seed) = seed {
                compile(&seed).map_err(StartError::Seed)?;
                let seeded = control
                    .commit("seed", "seed", seed, "initial table".into(), None)
                    .await;
                match seeded {
                    Ok(_) => {}
                    // Replicas started together with the same --seed: the
                    // one that stored version 1 first wins; the others take
                    // its version and start.
                    Err(e) if e.code == "conflict" => {
                        control.catch_up().await?;
                        tracing::info!(
                            version = ?control.latest().map(|r| r.version),
                            "another replica stored its seed first; serving the stored table"
                        );
                    }
                    Err(e) => {
                        return Err(StartError::Store(StoreError::Corrupt {
                            path: Default::default(),
                            reason: e.message,
                        }))
                    }
                }
            }
        }
        drop(_guard);
        Ok(control)
    }

    /// Follows what other replicas do: their versions (adopted in order)
    /// and their proxies' stats (judged by the leader with the rest).
    fn follow_replicas(self: &Arc<Self>) {
        if let Some(mut changes) = self.store.follow() {
            // Another replica wrote: adopt its versions (in order).
            let c = Arc::downgrade(self);
            tokio::spawn(async move {
                while changes.recv().await.is_some() {
                    let Some(c) = c.upgrade() else { return };
                    let _guard = c.write_lock.lock().await;
                    if let Err(e) = c.catch_up().await {
                        tracing::warn!(error = %e, "cannot read new versions from the store");
                    }
                }
            });
        }
        if let Some(mut reports) = self.store.remote_stats() {
            // Stats the proxies of other replicas sent: the leader judges
            // rollouts on the whole fleet's figures.
            let c = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(json) = reports.recv().await {
                    let Some(c) = c.upgrade() else { return };
                    let Ok(report) =
                        serde_json::from_slice::<edgesteer_control_api::api::StatsReport>(&json)
                    else {
                        continue;
                    };
                    c.ingest_stats(&report);
                }
            });
        }
    }

    /// How long a proxy that stopped reporting stays in the fleet view.
    pub fn set_fleet_expiry(&self, expiry: std::time::Duration) {
        self.fleet.set_expiry(expiry);
    }

    pub fn latest(&self) -> Option<Arc<VersionRecord>> {
        self.current.borrow().clone()
    }

    /// Client-certificate names (`--cert-proxy`) that may watch, ack and
    /// report as proxies without a token; set once, before serving.
    pub fn set_geo_db(&self, geo: Arc<edgesteer_geo::GeoDb>) {
        let _ = self.geo.set(geo);
    }

    pub(crate) fn geo(&self) -> Option<&edgesteer_geo::GeoDb> {
        self.geo.get().map(|g| &**g)
    }

    /// One proxy's stats: into the rollout windows, the console's view
    /// and the preview's traffic model.
    pub(crate) fn ingest_stats(&self, report: &edgesteer_control_api::api::StatsReport) {
        if let Some(t) = &report.traffic {
            self.traffic.ingest(&report.proxy, t);
            self.limit_model.ingest(&report.proxy, t);
        }
        if let Some(cur) = self.latest() {
            self.windows.ingest(&cur.table, report);
            self.live.ingest(&cur.table, report);
        }
    }

    pub fn set_cert_proxies(&self, names: Vec<String>) {
        let _ = self.cert_proxies.set(names);
    }

    /// The `--cert-proxy` name among a verified client certificate's
    /// names, if any.
    pub(crate) fn cert_proxy(&self, names: &[String]) -> Option<&str> {
        let listed = self.cert_proxies.get()?;
        names
            .iter()
            .find_map(|n| listed.iter().find(|l| *l == n))
            .map(String::as_str)
    }

    /// Ends every open watch long-poll now and later ones at once (304):
    /// the service is shutting down and proxies reconnect elsewhere or later.
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// Follows the shutdown flag set by [`Control::close_watches`].
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
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

    /// Version `v`, or the API's 404 (410 when it is older than the
    /// versions kept in memory; see [`crate::history`]).
    pub(crate) fn version(&self, v: u64) -> Result<Arc<VersionRecord>, ApiError> {
        self.versions.get(v)
    }

    /// The newest `limit` versions, newest first.
    pub(crate) fn newest(&self, limit: usize) -> Vec<Arc<VersionRecord>> {
        self.versions.newest(limit)
    }

    /// Keeps at most `n` versions in memory (default
    /// [`crate::history::DEFAULT_WINDOW`]); the store keeps every one.
    pub fn set_history_window(&self, n: usize) {
        self.versions.set_cap(n);
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
        self.commit_as(actor, action, table, reason, restored, false)
            .await
    }

    /// [`Control::commit`] of the rollout controller: stored only while
    /// this replica holds the controller's lease (the store checks it in
    /// the same transaction), so a replica that lost it commits nothing.
    pub(crate) async fn commit_as_controller(
        &self,
        actor: &str,
        action: &str,
        table: TableSpec,
        reason: String,
    ) -> Result<Arc<VersionRecord>, ApiError> {
        self.commit_as(actor, action, table, reason, None, true)
            .await
    }

    async fn commit_as(
        &self,
        actor: &str,
        action: &str,
        table: TableSpec,
        reason: String,
        restored: Option<u64>,
        fenced: bool,
    ) -> Result<Arc<VersionRecord>, ApiError> {
        let mut table = table;
        hash_keys(&mut table)?;
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
        let stored = if fenced {
            self.store.append_as_leader(&record).await
        } else {
            self.store.append(&record).await
        };
        stored.map_err(store_error)?;
        let record = Arc::new(record);
        self.versions.push(record.clone());
        if self.latest().is_none_or(|l| l.version < record.version) {
            self.current.send_replace(Some(record.clone()));
        }
        tracing::info!(
            version,
            actor,
            action,
            changes = record.audit.summary.len(),
            "table version committed"
        );
        Ok(record)
    }

    /// The token presented with a request, if its role allows `access`:
    /// 401 without a known token, 403 for the wrong role. Refusals are
    /// counted and logged with the peer (and the token's name, never its
    /// secret).
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        access: Access,
    ) -> Result<&Token, ApiError> {
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        authorize(&self.tokens, headers, access, "--token-file").map_err(|r| {
            if r.status == StatusCode::FORBIDDEN {
                self.forbidden.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, ?access, reason = %r.message, "config service request refused: role not allowed");
            } else {
                self.unauthenticated.fetch_add(1, Ordering::Relaxed);
                let presented = bearer(headers).is_some();
                tracing::warn!(%peer, ?access, presented, "config service request refused: no valid token");
            }
            ApiError::new(r.status, r.error, r.message)
        })
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

/// A failed append as the API's error (nothing was changed).
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(v) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("another replica committed version {v} at the same moment; nothing was changed: re-read the table and retry"),
        ),
        StoreError::NotLeader(why) => ApiError::new(
            StatusCode::CONFLICT,
            "not_leader",
            format!("this replica no longer runs the rollout controller ({why}); nothing was changed"),
        ),
        StoreError::Unconfirmed(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unconfirmed",
            format!("{e}; the change may or may not have been stored: look at `ctl history` (or GET /v1/history) before trying again"),
        ),
        StoreError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the change was not stored: {e}"),
        ),
        e => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_failed",
            format!("the change was not stored: {e}"),
        ),
    }
}

/// Serves the config service's `app` on `listener` until `shutdown`
/// resolves, through [`edgesteer_listener::serve_with`]: the service's own
/// connection counters, and held watches ended when the drain begins.
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Arc<Control>,
    app: axum::Router,
    transport: edgesteer_listener::Transport,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let stats = control.conn_stats.clone();
    edgesteer_listener::serve_with(
        listener,
        app,
        transport,
        stats,
        move || control.close_watches(),
        shutdown,
    )
    .await
}
