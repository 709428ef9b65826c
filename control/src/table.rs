//! Handlers of the table endpoints: read the current or any version, replace
//! the table, patch one region, roll back, history and diff. A write that
//! would leave the table as it is commits nothing (`400 empty_change`).

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use axum::Json;
use bytes::Bytes;
use edgesteer_config::ratelimit::hashed_key;
use edgesteer_config::wire::{RegionSpec, RolloutSpec};
use edgesteer_config::{diff, parse, TableSpec};

use crate::http::{malformed_part, parse_body, tagged, ApiError};
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
    v: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(v) = v.map_err(|e| malformed_part(e.body_text(), "version", "a version number"))?;
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
    crate::compiled::compile_blocking(&spec).await?;
    let _guard = c.write_guard().await?;
    c.check_if_match(&headers)?;
    if let Some(cur) = c.latest() {
        starts_no_rollout(&cur.table, &spec)?;
        if with_hashed_keys(&spec) == cur.table {
            return Err(unchanged(format!(
                "the table is the same as version {}; nothing was committed",
                cur.version
            )));
        }
    }
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
    let r = spec
        .regions
        .get_mut(&region)
        .ok_or_else(|| unknown_region(&region))?;
    let action = apply_patch(&region, r, &req)?;
    if spec == cur.table {
        return Err(unchanged(format!(
            "region {region} already is as asked (version {}); nothing was committed",
            cur.version
        )));
    }
    crate::compiled::compile_blocking(&spec).await?;
    let rec = c.commit(&actor, &action, spec, req.reason, None).await?;
    Ok(tagged(&rec, &c.epoch))
}

/// `404 unknown_region`.
pub(crate) fn unknown_region(region: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_region",
        format!("no region `{region}`"),
    )
    .at(format!("regions.{region}"), "no such region")
}

/// Applies a patch to one region; the audit action names what changed
/// (`set-weight`, `set-canary`, `shift`, joined by `+`). The preview
/// applies patches with it too.
pub(crate) fn apply_patch(
    region: &str,
    r: &mut RegionSpec,
    req: &PatchRegion,
) -> Result<String, ApiError> {
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
        // The rollout's controller owns the share while it runs (or may
        // resume): a share set beside it would be undone at its next step.
        if let Some(ro) = r
            .rollout
            .as_ref()
            .filter(|ro| matches!(ro.state.as_str(), "running" | "paused"))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "rollout_in_progress",
                format!(
                    "region {region} has a {} rollout at step {}; its controller sets the canary share, and would set this one back at its next step: abort it to take the canary out (`ctl rollout abort {region}`), or let it run",
                    ro.state,
                    ro.step + 1
                ),
            )
            .at("canary_bps", format!("set by the {} rollout", ro.state)));
        }
        let has_canary = r
            .backends
            .iter()
            .any(|b| b.track.as_deref() == Some("canary"));
        if bps > 0 && !has_canary {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_canary_backends",
                format!(
                    "region {region} has no canary backends (track = \"canary\"); a canary share of {bps} bps would send nobody to a canary"
                ),
            )
            .at("canary_bps", "the region has no canary backends; add one first"));
        }
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
    let _guard = c.write_guard().await?;
    c.check_if_match(&headers)?;
    let mut table = target.table.clone();
    if let Some(cur) = c.latest() {
        keep_rollouts(&cur.table, &mut table);
    }
    crate::compiled::compile_blocking(&table).await?;
    if let Some(cur) = c.latest().filter(|cur| cur.table == table) {
        return Err(unchanged(format!(
            "version {}'s table is the current one (version {}, rollouts kept as they are); nothing was committed",
            req.to, cur.version
        )));
    }
    let rec = c
        .commit(&actor, "rollback", table, req.reason, Some(req.to))
        .await?;
    Ok(tagged(&rec, &c.epoch))
}

/// Whether a rollout runs, or may run again (paused).
fn live(ro: Option<&RolloutSpec>) -> bool {
    ro.is_some_and(|r| matches!(r.state.as_str(), "running" | "paused"))
}

/// A table written whole may not start, resume or move a rollout: one
/// exported before the controller moved (or before an abort) would run
/// again from a stale step, with a window long past its hold. Rollouts
/// are started, paused, resumed and aborted by their own commands.
fn starts_no_rollout(current: &TableSpec, new: &TableSpec) -> Result<(), ApiError> {
    for (name, region) in &new.regions {
        let was = current.regions.get(name).and_then(|r| r.rollout.as_ref());
        let now = region.rollout.as_ref();
        if live(now) && now != was {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "rollout_in_progress",
                format!("the table would start, resume or move the rollout in {name}; rollouts are run by their commands (`ctl rollout start|resume {name}`): take the current table (`ctl get --toml`) and change what you meant to"),
            )
            .at(format!("regions.{name}.rollout"), "set by the rollout commands"));
        }
    }
    Ok(())
}

/// A restored table may not bring back a rollout that runs or is paused
/// (one since aborted or rolled back would advance at once, its hold long
/// past): such a region keeps its current rollout and canary share. Any
/// other restored rollout (none, completed, ended) and its share are
/// restored as they were, so a rollback to before a release undoes it.
/// A region the current table no longer has gets its live rollout aborted.
fn keep_rollouts(current: &TableSpec, restored: &mut TableSpec) {
    for (name, region) in &mut restored.regions {
        match current.regions.get(name) {
            Some(cur) if live(region.rollout.as_ref()) && cur.rollout != region.rollout => {
                region.rollout.clone_from(&cur.rollout);
                region.canary_bps = cur.canary_bps;
            }
            Some(_) => {}
            None if live(region.rollout.as_ref()) => {
                if let Some(ro) = region.rollout.as_mut() {
                    ro.state = "aborted".into();
                    ro.reason = Some(
                        "restored by a rollback: rollouts are started by their commands".into(),
                    );
                }
                region.canary_bps = 0;
            }
            None => {}
        }
    }
}

/// `400 empty_change`: a write that would store a table equal to the
/// current one (the audit would show no change).
fn unchanged(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "empty_change", message)
}

/// `spec` as it would be stored: plain API keys as `sha256:<hex>` (the
/// service hashes them on the way in), for comparing with a stored table.
fn with_hashed_keys(spec: &TableSpec) -> TableSpec {
    let mut spec = spec.clone();
    for policy in &mut spec.rate_limits {
        policy.keys = std::mem::take(&mut policy.keys)
            .into_iter()
            .map(|(key, tier)| match key.starts_with("sha256:") {
                true => (key, tier),
                false => (hashed_key(&key), tier),
            })
            .collect();
    }
    spec
}

pub(crate) async fn history(
    State(c): State<Arc<Control>>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let Query(q) =
        q.map_err(|e| malformed_part(e.body_text(), "limit", "how many versions, a number"))?;
    let versions = c
        .newest(q.limit.unwrap_or(50))
        .iter()
        .map(|r| HistoryEntry {
            version: r.version,
            audit: r.audit.clone(),
        })
        .collect();
    Ok(Json(History { versions }))
}

pub(crate) async fn get_diff(
    State(c): State<Arc<Control>>,
    q: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<Diff>, ApiError> {
    let Query(q) = q.map_err(|e| malformed_part(e.body_text(), "from, to", "version numbers"))?;
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
