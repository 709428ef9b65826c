//! `POST /v1/preview`: what a change would do to the fleet's traffic,
//! before it is made. The change is read as the write would read it (a
//! whole table as `PUT /v1/table` parses it, or a region PATCH applied by
//! the same code as `PATCH /v1/regions/{r}`) and compiled by the same
//! compile, so a change the write would refuse is refused here with the
//! same answer (e.g. 422 for a failover across zones). Nothing is stored:
//! the handler never takes the write lock and never commits.
//!
//! A `read` token may preview (see `guard`); the computation is
//! [`crate::impact`], over [`crate::traffic`] and the fleet's reported
//! health, and [`crate::impact_limits`] over [`crate::limit_model`] for
//! the 429s of rate-limit tiers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use edgesteer_config::{parse, TableSpec};
use edgesteer_control_api::preview::{Preview, PreviewRequest, MAX_WINDOW_S, MIN_WINDOW_S};

use crate::figures::now_ms;
use crate::http::{parse_body, ApiError};
use crate::impact::{impact, Side};
use crate::live::FleetHealth;
use crate::state::Control;

pub(crate) async fn preview(
    State(c): State<Arc<Control>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Preview>, ApiError> {
    let started = Instant::now();
    let req: PreviewRequest<serde_json::Value> = parse_body(body)?;
    let cur = c.current_or_404()?;
    let spec = proposed(&cur.table, req.table, req.region, req.patch)?;
    let after = crate::compiled::compile_blocking(&spec).await?;
    let before = c.compiled.of(&cur).await?;
    let window_s = req
        .window_s
        .unwrap_or(MAX_WINDOW_S)
        .clamp(MIN_WINDOW_S, MAX_WINDOW_S);
    let window_ms = window_s * 1000;
    let observed = c.traffic.observed(window_ms);
    let peaks = c.live.peaks(now_ms().saturating_sub(window_ms));
    let (unhealthy, _) = c.live.unhealthy();
    let health_before = FleetHealth {
        table: &before,
        unhealthy: &unhealthy,
    };
    let health_after = FleetHealth {
        table: &after,
        unhealthy: &unhealthy,
    };
    let mut out = impact(
        &Side {
            table: &before,
            health: &health_before,
        },
        &Side {
            table: &after,
            health: &health_after,
        },
        &observed,
        &peaks,
    );
    let limits = c.limit_model.observed(window_ms);
    out.limits = crate::impact_limits::project(
        &before.rate_limits,
        &after.rate_limits,
        &limits,
        &mut out.unmodeled,
    );
    out.version = cur.version;
    out.window_s = window_s;
    out.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(
        version = cur.version,
        window_s,
        cells = observed.cells.len(),
        took_ms = out.took_ms,
        "preview"
    );
    Ok(Json(out))
}

/// The table the change would store: `table` read as `PUT /v1/table`
/// reads it, or `current` with `patch` applied to `region` as
/// `PATCH /v1/regions/{region}` applies it.
fn proposed(
    current: &TableSpec,
    table: Option<serde_json::Value>,
    region: Option<String>,
    patch: Option<edgesteer_control_api::api::PatchRegion>,
) -> Result<TableSpec, ApiError> {
    match (table, region, patch) {
        (Some(table), None, None) => {
            let text = serde_json::to_vec(&table).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_table", e.to_string())
            })?;
            parse::from_json(&text).map_err(ApiError::from_config)
        }
        (None, Some(region), Some(patch)) => {
            let mut spec = current.clone();
            let r = spec
                .regions
                .get_mut(&region)
                .ok_or_else(|| crate::table::unknown_region(&region))?;
            crate::table::apply_patch(&region, r, &patch)?;
            Ok(spec)
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "give `table` (a whole table), or `region` and `patch` (a region change)",
        )
        .at("table", "give `table`, or `region` and `patch`")),
    }
}
