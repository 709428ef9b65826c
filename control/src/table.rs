//! Handlers of the table endpoints: read the current or any version, replace
//! the table, patch one region, roll back, history and diff.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use axum::Json;
use bytes::Bytes;
use edgesteer_config::wire::RegionSpec;
use edgesteer_config::{compile, diff, parse};

use crate::http::{parse_body, tagged, ApiError};
use crate::state::Control;
use edgesteer_control_api::api::{
    Diff, DiffQuery, History, HistoryEntry, HistoryQuery, PatchRegion, PutTable, Rollback,
};
use edgesteer_control_api::Caller;

pub(crate) async fn get_table(State(c): State<Arc<Control>>) -> Result<Response, ApiError> {
    let r = c.current_or_404()?;
    Ok(tagged(&r, &c.epoch))
}

pub(crate) async fn get_version(
    State(c): State<Arc<Control>>,
    Path(v): Path<u64>,
) -> Result<Response, ApiError> {
    let r = c.version(v)?;
    Ok(tagged(&r, &c.epoch))
}

pub(crate) async fn put_table(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = caller.name;
    let req: PutTable<serde_json::Value> = parse_body(body)?;
    // Parse the table on its own so paths are relative to the table.
    let text = serde_json::to_vec(&req.table)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_table", e.to_string()))?;
    let spec = parse::from_json(&text).map_err(ApiError::from_config)?;
    compile(&spec).map_err(ApiError::from_config)?;
    let _guard = c.write_guard().await?;
    c.check_if_match(&headers)?;
    let r = c.commit(&actor, "replace", spec, req.reason, None).await?;
    Ok(tagged(&r, &c.epoch))
}

pub(crate) async fn patch_region(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = caller.name;
    let req: PatchRegion = parse_body(body)?;
    let _guard = c.write_guard().await?;
    c.check_if_match(&headers)?;
    let cur = c.current_or_404()?;
    let mut spec = cur.table.clone();
    let r = spec.regions.get_mut(&region).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_region",
            format!("no region `{region}`"),
        )
        .at(format!("regions.{region}"), "no such region")
    })?;
    let action = apply_patch(&region, r, &req)?;
    compile(&spec).map_err(ApiError::from_config)?;
    let rec = c.commit(&actor, &action, spec, req.reason, None).await?;
    Ok(tagged(&rec, &c.epoch))
}

/// Applies a patch to one region; the audit action names what changed
/// (`set-weight`, `set-canary`, `shift`, joined by `+`).
fn apply_patch(region: &str, r: &mut RegionSpec, req: &PatchRegion) -> Result<String, ApiError> {
    let mut action = Vec::new();
    for (addr, w) in &req.weights {
        let b = r
            .backends
            .iter_mut()
            .find(|b| &b.address == addr)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_backend",
                    format!("region {region} has no backend `{addr}`"),
                )
                .at(format!("weights.{addr}"), "no such backend in this region")
            })?;
        b.weight = *w;
        action.push("set-weight");
    }
    if let Some(bps) = req.canary_bps {
        r.canary_bps = bps;
        action.push("set-canary");
    }
    if let Some(d) = req.drain {
        r.drain = d;
        action.push("shift");
    }
    if action.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_change",
            "give weights, canary_bps or drain",
        ));
    }
    action.dedup();
    Ok(action.join("+"))
}

pub(crate) async fn rollback(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = caller.name;
    let req: Rollback = parse_body(body)?;
    let target = c.version(req.to)?;
    compile(&target.table).map_err(ApiError::from_config)?;
    let _guard = c.write_guard().await?;
    c.check_if_match(&headers)?;
    let rec = c
        .commit(
            &actor,
            "rollback",
            target.table.clone(),
            req.reason,
            Some(req.to),
        )
        .await?;
    Ok(tagged(&rec, &c.epoch))
}

pub(crate) async fn history(
    State(c): State<Arc<Control>>,
    Query(q): Query<HistoryQuery>,
) -> Json<History> {
    let versions = c
        .newest(q.limit.unwrap_or(50))
        .iter()
        .map(|r| HistoryEntry {
            version: r.version,
            audit: r.audit.clone(),
        })
        .collect();
    Json(History { versions })
}

pub(crate) async fn get_diff(
    State(c): State<Arc<Control>>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<Diff>, ApiError> {
    let latest = c.current_or_404()?;
    let to = q.to.unwrap_or(latest.version);
    let from = q.from.unwrap_or(to.saturating_sub(1));
    let (a, b) = (c.version(from)?, c.version(to)?);
    Ok(Json(Diff {
        from,
        to,
        changes: diff::diff(&a.table, &b.table),
    }))
}
