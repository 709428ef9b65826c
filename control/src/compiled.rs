//! Compiling tables off the async runtime. A compile reads the files a
//! table names (CA bundles, client certificates; through the bounded
//! loader `edgesteer_config::pem`), so a write's compile runs on a
//! blocking thread ([`compile_blocking`]), and the explain endpoint uses
//! the current version's compiled table, made once per version
//! ([`CompiledCache`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use edgesteer_config::{RoutingTable, TableSpec};

use crate::http::ApiError;
use crate::store::VersionRecord;

/// `compile(spec)` on a blocking thread: the table, or the API's error
/// naming every field at fault.
pub(crate) async fn compile_blocking(spec: &TableSpec) -> Result<RoutingTable, ApiError> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || edgesteer_config::compile(&spec))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "compile_failed",
                format!("the table's compile did not finish: {e}"),
            )
        })?
        .map_err(ApiError::from_config)
}

/// The compiled table of one version, kept until another version is asked
/// for.
#[derive(Default)]
pub(crate) struct CompiledCache {
    /// Held across a compile, so concurrent explains compile once.
    held: tokio::sync::Mutex<Option<(u64, Arc<RoutingTable>)>>,
    /// Compiles made (for tests: once per version).
    pub(crate) compiles: AtomicU64,
}

impl CompiledCache {
    /// `r`'s compiled table: the kept one if it is `r`'s, else compiled
    /// now (on a blocking thread) and kept.
    pub(crate) async fn of(&self, r: &VersionRecord) -> Result<Arc<RoutingTable>, ApiError> {
        let mut held = self.held.lock().await;
        if let Some((v, t)) = held.as_ref() {
            if *v == r.version {
                return Ok(t.clone());
            }
        }
        let table = Arc::new(compile_blocking(&r.table).await?);
        self.compiles.fetch_add(1, Ordering::Relaxed);
        // Never replace a newer version's table with an older one.
        if held.as_ref().is_none_or(|(v, _)| *v < r.version) {
            *held = Some((r.version, table.clone()));
        }
        Ok(table)
    }
}
