//! Progressive canary rollouts, run by the config service: the controller
//! that moves running rollouts, their status, and the rollout commands.
//!
//! Proxies report per-(region, track) request, error and latency-bucket
//! deltas about once a second ([`StatsReport`]). The controller keeps a
//! window per region since the current step began ([`crate::figures`]) and,
//! several times a second, judges the gates:
//! - canary 5xx rate not above `max_error_rate` with 99% confidence (once 20
//!   canary requests are in), and within it to advance;
//! - canary p99 at most `max_p99_ratio` x stable's (once both have
//!   `min_requests`; judged before advancing, unless the share is 100%);
//! - no canary backend failing health checks (blocks advancing, not a rollback);
//! - at least `min_requests` (and 20) canary requests and `hold_ms` before advancing.
//!
//! A failed gate rolls back at once (share 0, state `rolled_back`, the gate
//! and its figures in the audit); a held step advances. Every change is a
//! new table version, so every proxy applies the same decision.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use bytes::Bytes;
use edgesteer_config::model::RolloutState;
use edgesteer_config::wire::{RegionSpec, RolloutSpec, RolloutStep};
use edgesteer_config::TableSpec;

use crate::compiled::compile_blocking;
use crate::figures::{gates, now_ms, Verdict};
use crate::http::{parse_body, ApiError};
use crate::state::Control;
use edgesteer_control_api::api::{
    RolloutAction, RolloutChange, RolloutCommand, RolloutStatus, Rollouts,
};
use edgesteer_control_api::Caller;

// The report types and buckets lived here; kept at these paths for the proxy.
pub use crate::figures::LATENCY_BUCKETS_MS;
pub use edgesteer_control_api::api::{RegionReport, StatsReport, TrackReport};

/// The state of a rollout in the table (see [`RolloutState::of`]).
pub fn state_of(ro: &RolloutSpec) -> RolloutState {
    RolloutState::of(ro)
}

fn set_state(ro: &mut RolloutSpec, state: RolloutState) {
    ro.state = state.as_str().into();
}

/// 5% -> 10% -> 25% -> 50% -> 100%, one minute each.
pub fn default_steps() -> Vec<RolloutStep> {
    [500, 1000, 2500, 5000, 10_000]
        .into_iter()
        .map(|canary_bps| RolloutStep {
            canary_bps,
            hold_ms: 60_000,
        })
        .collect()
}

/// Carries out a verdict on a region's rollout; the audit action.
fn carry_out(r: &mut RegionSpec, verdict: Verdict, reason: &str) -> Option<&'static str> {
    let ro = r.rollout.as_mut()?;
    Some(match verdict {
        Verdict::Advance if ro.step + 1 < ro.steps.len() => {
            ro.step += 1;
            r.canary_bps = ro.steps[ro.step].canary_bps;
            ro.step_started_ms = now_ms();
            "rollout-advance"
        }
        Verdict::Advance => {
            set_state(ro, RolloutState::Completed);
            ro.step_started_ms = now_ms();
            "rollout-complete"
        }
        Verdict::RollBack => {
            set_state(ro, RolloutState::RolledBack);
            ro.reason = Some(reason.to_string());
            r.canary_bps = 0;
            "rollout-rollback"
        }
    })
}

impl Control {
    /// One pass of the rollout state machine over every running rollout.
    pub async fn tick_rollouts(&self) {
        // One controller per store: with replicas, the lease holder.
        if !self.is_leader() {
            return;
        }
        let Some(cur) = self.latest() else { return };
        for (region, spec) in &cur.table.regions {
            let Some(ro) = spec
                .rollout
                .as_ref()
                .filter(|r| state_of(r) == RolloutState::Running)
            else {
                continue;
            };
            let Some((verdict, reason)) = self.windows.judge(region, ro) else {
                continue;
            };
            // The audit names who the controller acted for: the proxies
            // (authenticated by proxy tokens) whose stats decided it.
            let reason = format!(
                "{reason}; rollout controller, on stats from proxies {}",
                self.windows.reporters(region).join(", ")
            );
            let Ok(_guard) = self.write_guard().await else {
                return;
            };
            // Re-read under the lock: an operator may have changed it meanwhile.
            let Some(now) = self.latest() else { return };
            if now.version != cur.version {
                return;
            }
            let mut table = now.table.clone();
            let Some(label) = table
                .regions
                .get_mut(region)
                .and_then(|r| carry_out(r, verdict, &reason))
            else {
                continue;
            };
            if compile_blocking(&table).await.is_err() {
                tracing::error!(
                    region,
                    "rollout change does not compile; leaving the table as it is"
                );
                continue;
            }
            let actor = match self.replica() {
                Some(r) => format!("rollout@{r}"),
                None => "rollout".to_string(),
            };
            // Fenced: stored only while this replica still holds the lease.
            match self
                .commit_as_controller(&actor, label, table, reason)
                .await
            {
                Ok(rec) => tracing::info!(
                    region,
                    version = rec.version,
                    action = label,
                    "rollout moved"
                ),
                Err(e) => tracing::error!(region, error = ?e, "rollout change not stored"),
            }
            return; // one change per tick; the next tick sees the new version
        }
    }

    /// Status of every region with a rollout, for `GET /v1/rollouts`.
    fn rollout_status(&self) -> Rollouts {
        let Some(cur) = self.latest() else {
            return Rollouts::default();
        };
        let rollouts = cur
            .table
            .regions
            .iter()
            .filter_map(|(name, r)| {
                let ro = r.rollout.as_ref()?;
                let state = state_of(ro);
                let hold = ro.steps.get(ro.step).map_or(0, |s| s.hold_ms);
                let next_step_in_ms = (state == RolloutState::Running)
                    .then(|| hold.saturating_sub(now_ms().saturating_sub(ro.step_started_ms)));
                Some(RolloutStatus {
                    region: name.clone(),
                    state,
                    step: ro.step,
                    steps: ro.steps.clone(),
                    canary_bps: r.canary_bps,
                    gates: gates(ro),
                    figures: self.windows.figures(name, ro),
                    next_step_in_ms,
                    reason: ro.reason.clone(),
                })
            })
            .collect();
        Rollouts {
            version: Some(cur.version),
            rollouts,
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(control: Arc<Control>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        control.tick_rollouts().await;
    }
}

pub(crate) async fn get_rollouts(State(c): State<Arc<Control>>) -> Json<Rollouts> {
    Json(c.rollout_status())
}

pub(crate) async fn post_rollout(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RolloutChange>, ApiError> {
    let actor = caller.name;
    let req: RolloutCommand = parse_body(body)?;
    let _guard = c.write_guard().await?;
    let cur = c.current_or_404()?;
    let mut table: TableSpec = cur.table.clone();
    let r = table.regions.get_mut(&region).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_region",
            format!("no region `{region}`"),
        )
    })?;
    apply_command(&region, r, &req, &actor)?;
    compile_blocking(&table).await?;
    let action = format!("rollout-{}", req.action.as_str());
    let rec = c.commit(&actor, &action, table, req.reason, None).await?;
    let rollout = rec
        .table
        .regions
        .get(&region)
        .and_then(|r| r.rollout.clone());
    Ok(Json(RolloutChange {
        version: rec.version,
        rollout,
    }))
}

/// Applies an operator's command to one region's rollout.
fn apply_command(
    region: &str,
    r: &mut RegionSpec,
    req: &RolloutCommand,
    actor: &str,
) -> Result<(), ApiError> {
    use RolloutState::{Aborted, Paused, Running};
    let conflict = |msg: String| ApiError::new(StatusCode::CONFLICT, "bad_rollout_state", msg);
    if req.action == RolloutAction::Start {
        if let Some(s) = r.rollout.as_ref().map(state_of) {
            if matches!(s, Running | Paused) {
                return Err(conflict(format!(
                    "a rollout of {region} is already {}; abort it first",
                    s.as_str()
                )));
            }
        }
        let steps = req.steps.clone().unwrap_or_else(default_steps);
        r.canary_bps = steps.first().map_or(0, |s| s.canary_bps);
        r.rollout = Some(RolloutSpec {
            state: Running.as_str().into(),
            step: 0,
            steps,
            max_error_rate: req.max_error_rate,
            max_p99_ratio: req.max_p99_ratio,
            min_requests: req.min_requests,
            step_started_ms: now_ms(),
            reason: None,
        });
        return Ok(());
    }
    if let RolloutAction::Other(other) = &req.action {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_action",
            format!("`{other}` is not start, pause, resume or abort"),
        ));
    }
    let ro = r
        .rollout
        .as_mut()
        .ok_or_else(|| conflict(format!("{region} has no rollout")))?;
    match (&req.action, state_of(ro)) {
        (RolloutAction::Pause, Running) => set_state(ro, Paused),
        (RolloutAction::Resume, Paused) => {
            set_state(ro, Running);
            ro.step_started_ms = now_ms();
        }
        (RolloutAction::Abort, Running | Paused) => {
            set_state(ro, Aborted);
            ro.reason = Some(if req.reason.is_empty() {
                format!("aborted by {actor}")
            } else {
                format!("aborted by {actor}: {}", req.reason)
            });
            r.canary_bps = 0;
        }
        (a, _) => {
            return Err(conflict(format!(
                "cannot {} a rollout that is {}",
                a.as_str(),
                ro.state
            )))
        }
    }
    Ok(())
}
