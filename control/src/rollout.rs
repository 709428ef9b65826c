//! Progressive canary rollouts, run by the config service.
//!
//! Proxies report per-(region, track) request, error and latency-bucket
//! deltas about once a second ([`StatsReport`]). The controller keeps a
//! window per region since the current step began and, several times a
//! second, judges the gates:
//! - canary 5xx rate at most `max_error_rate` (once 20 canary requests are in);
//! - canary p99 at most `max_p99_ratio` x stable's (once both have `min_requests`);
//! - no canary backend failing health checks (blocks advancing, not a rollback);
//! - at least `min_requests` canary requests and `hold_ms` before advancing.
//!
//! A failed gate rolls back at once (share 0, state `rolled_back`, the gate
//! and its figures in the audit); a held step advances. Every change is a
//! new table version, so every proxy applies the same decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use edgesteer_config::wire::{RolloutSpec, RolloutStep};
use edgesteer_config::{compile, TableSpec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::service::{body_error, json_body, write_request, ApiError, Control};

/// Upper bounds (ms) of the latency buckets; one more bucket catches the rest.
pub const LATENCY_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
/// Canary requests needed before the error-rate gate can fire.
const MIN_ERROR_SAMPLE: u64 = 20;
/// A proxy's canary-health report counts for this long.
const HEALTH_FRESH: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackReport {
    pub requests: u64,
    pub errors: u64,
    pub buckets: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionReport {
    pub stable: TrackReport,
    pub canary: TrackReport,
    pub canary_backends: u32,
    pub canary_unhealthy: u32,
}

/// What one proxy saw since its previous report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub proxy: String,
    pub version: u64,
    pub regions: BTreeMap<String, RegionReport>,
}

#[derive(Debug, Default, Clone, Serialize)]
struct Acc {
    requests: u64,
    errors: u64,
    buckets: Vec<u64>,
}

impl Acc {
    fn add(&mut self, t: &TrackReport) {
        self.requests += t.requests;
        self.errors += t.errors;
        if self.buckets.len() < t.buckets.len() {
            self.buckets.resize(t.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&t.buckets) {
            *a += b;
        }
    }

    fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    /// p99 as the upper bound of the bucket holding it (ms).
    fn p99_ms(&self) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(f64::INFINITY);
            }
        }
        f64::INFINITY
    }
}

/// Figures of the current step of one region.
#[derive(Debug, Default)]
pub(crate) struct Window {
    step_key: (u64, usize),
    stable: Acc,
    canary: Acc,
    /// Per proxy: (when reported, unhealthy canary backends).
    canary_health: HashMap<String, (std::time::Instant, u32)>,
}

impl Window {
    fn unhealthy_canaries(&self) -> u32 {
        self.canary_health
            .values()
            .filter(|(t, _)| t.elapsed() < HEALTH_FRESH)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Gate settings with defaults applied.
fn gates(ro: &RolloutSpec) -> (f64, f64, u64) {
    (
        ro.max_error_rate.unwrap_or(0.01),
        ro.max_p99_ratio.unwrap_or(1.5),
        ro.min_requests.unwrap_or(100),
    )
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

impl Control {
    /// Folds a proxy's report into the windows of running rollouts.
    pub(crate) fn ingest(&self, report: &StatsReport) {
        let Some(cur) = self.latest() else { return };
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        for (region, r) in &report.regions {
            let Some(ro) = cur
                .table
                .regions
                .get(region)
                .and_then(|s| s.rollout.as_ref())
            else {
                continue;
            };
            let w = windows.entry(region.clone()).or_default();
            let key = (ro.step_started_ms, ro.step);
            if w.step_key != key {
                *w = Window {
                    step_key: key,
                    ..Window::default()
                };
            }
            w.stable.add(&r.stable);
            w.canary.add(&r.canary);
            w.canary_health.insert(
                report.proxy.clone(),
                (std::time::Instant::now(), r.canary_unhealthy),
            );
        }
    }

    /// One pass of the rollout state machine over every running rollout.
    pub async fn tick_rollouts(&self) {
        let Some(cur) = self.latest() else { return };
        for (region, spec) in &cur.table.regions {
            let Some(ro) = spec.rollout.as_ref().filter(|r| r.state == "running") else {
                continue;
            };
            let verdict = self.judge(region, ro);
            let Some((action, reason)) = verdict else {
                continue;
            };
            let _guard = self.write_lock.lock().await;
            // Re-read under the lock: an operator may have changed it meanwhile.
            let Some(now) = self.latest() else { return };
            if now.version != cur.version {
                return;
            }
            let mut table = now.table.clone();
            let Some(r) = table.regions.get_mut(region) else {
                continue;
            };
            let Some(ro) = r.rollout.as_mut() else {
                continue;
            };
            match action {
                Verdict::Advance => {
                    if ro.step + 1 < ro.steps.len() {
                        ro.step += 1;
                        r.canary_bps = ro.steps[ro.step].canary_bps;
                    } else {
                        ro.state = "completed".into();
                    }
                    ro.step_started_ms = now_ms();
                }
                Verdict::RollBack => {
                    ro.state = "rolled_back".into();
                    ro.reason = Some(reason.clone());
                    r.canary_bps = 0;
                }
            }
            let label = match (action, ro.state.as_str()) {
                (Verdict::RollBack, _) => "rollout-rollback",
                (Verdict::Advance, "completed") => "rollout-complete",
                _ => "rollout-advance",
            };
            if compile(&table).is_err() {
                tracing::error!(
                    region,
                    "rollout change does not compile; leaving the table as it is"
                );
                continue;
            }
            match self.commit("rollout", label, table, reason, None).await {
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

    fn judge(&self, region: &str, ro: &RolloutSpec) -> Option<(Verdict, String)> {
        let (max_err, max_ratio, min_requests) = gates(ro);
        let windows = self.windows.lock().ok()?;
        let empty = Window::default();
        let w = windows
            .get(region)
            .filter(|w| w.step_key == (ro.step_started_ms, ro.step))
            .unwrap_or(&empty);
        let step = ro.steps.get(ro.step)?;
        if w.canary.requests >= MIN_ERROR_SAMPLE && w.canary.error_rate() > max_err {
            return Some((
                Verdict::RollBack,
                format!(
                    "gate error_rate failed at step {} ({} bps): canary 5xx rate {:.2}% over {} requests > {:.2}%",
                    ro.step,
                    step.canary_bps,
                    w.canary.error_rate() * 100.0,
                    w.canary.requests,
                    max_err * 100.0
                ),
            ));
        }
        if w.canary.requests >= min_requests && w.stable.requests >= min_requests {
            let (c, s) = (w.canary.p99_ms(), w.stable.p99_ms());
            if c > s * max_ratio && c > LATENCY_BUCKETS_MS[0] {
                return Some((
                    Verdict::RollBack,
                    format!("gate p99 failed at step {}: canary p99 {c} ms > {max_ratio} x stable p99 {s} ms", ro.step),
                ));
            }
        }
        let held = now_ms().saturating_sub(ro.step_started_ms) >= step.hold_ms;
        if held && w.canary.requests >= min_requests && w.unhealthy_canaries() == 0 {
            return Some((
                Verdict::Advance,
                format!(
                    "step {} ({} bps) held {} ms: {} canary requests, 5xx {:.2}%, p99 {} ms (stable {} ms)",
                    ro.step,
                    step.canary_bps,
                    step.hold_ms,
                    w.canary.requests,
                    w.canary.error_rate() * 100.0,
                    w.canary.p99_ms(),
                    w.stable.p99_ms()
                ),
            ));
        }
        None
    }

    /// Status of every region with a rollout, for `GET /v1/rollouts`.
    fn rollout_status(&self) -> Value {
        let Some(cur) = self.latest() else {
            return json!({ "rollouts": [] });
        };
        let windows = self.windows.lock().ok();
        let list: Vec<Value> = cur
            .table
            .regions
            .iter()
            .filter_map(|(name, r)| {
                let ro = r.rollout.as_ref()?;
                let (max_err, max_ratio, min_requests) = gates(ro);
                let w = windows.as_ref().and_then(|w| w.get(name)).filter(|w| w.step_key == (ro.step_started_ms, ro.step));
                let hold = ro.steps.get(ro.step).map_or(0, |s| s.hold_ms);
                let next_in = (ro.state == "running").then(|| hold.saturating_sub(now_ms().saturating_sub(ro.step_started_ms)));
                Some(json!({
                    "region": name,
                    "state": ro.state,
                    "step": ro.step,
                    "steps": ro.steps,
                    "canary_bps": r.canary_bps,
                    "gates": { "max_error_rate": max_err, "max_p99_ratio": max_ratio, "min_requests": min_requests },
                    "figures": w.map(|w| json!({
                        "canary_requests": w.canary.requests,
                        "canary_error_rate": w.canary.error_rate(),
                        "canary_p99_ms": w.canary.p99_ms(),
                        "stable_requests": w.stable.requests,
                        "stable_p99_ms": w.stable.p99_ms(),
                        "unhealthy_canary_backends": w.unhealthy_canaries(),
                    })),
                    "next_step_in_ms": next_in,
                    "reason": ro.reason,
                }))
            })
            .collect();
        json!({ "version": cur.version, "rollouts": list })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Advance,
    RollBack,
}

/// Runs the controller until the process ends.
pub async fn run(control: Arc<Control>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        control.tick_rollouts().await;
    }
}

pub(crate) async fn post_stats(
    State(c): State<Arc<Control>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(body_error)?;
    let report: StatsReport = json_body(&body)?;
    c.ingest(&report);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_rollouts(State(c): State<Arc<Control>>) -> Json<Value> {
    Json(c.rollout_status())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutAction {
    action: String,
    #[serde(default)]
    steps: Option<Vec<RolloutStep>>,
    #[serde(default)]
    max_error_rate: Option<f64>,
    #[serde(default)]
    max_p99_ratio: Option<f64>,
    #[serde(default)]
    min_requests: Option<u64>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn post_rollout(
    State(c): State<Arc<Control>>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let (actor, req): (String, RolloutAction) = write_request(&c, &headers, body)?;
    let _guard = c.write_lock.lock().await;
    let cur = c.current_or_404()?;
    let mut table: TableSpec = cur.table.clone();
    let r = table.regions.get_mut(&region).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_region",
            format!("no region `{region}`"),
        )
    })?;
    let conflict = |msg: String| ApiError::new(StatusCode::CONFLICT, "bad_rollout_state", msg);
    let state = r.rollout.as_ref().map(|ro| ro.state.clone());
    match req.action.as_str() {
        "start" => {
            if state.as_deref() == Some("running") || state.as_deref() == Some("paused") {
                return Err(conflict(format!(
                    "a rollout of {region} is already {}; abort it first",
                    state.unwrap_or_default()
                )));
            }
            let steps = req.steps.clone().unwrap_or_else(default_steps);
            let first = steps.first().map_or(0, |s| s.canary_bps);
            r.rollout = Some(RolloutSpec {
                state: "running".into(),
                step: 0,
                steps,
                max_error_rate: req.max_error_rate,
                max_p99_ratio: req.max_p99_ratio,
                min_requests: req.min_requests,
                step_started_ms: now_ms(),
                reason: None,
            });
            r.canary_bps = first;
        }
        "pause" | "resume" | "abort" => {
            let ro = r
                .rollout
                .as_mut()
                .ok_or_else(|| conflict(format!("{region} has no rollout")))?;
            match (req.action.as_str(), ro.state.as_str()) {
                ("pause", "running") => ro.state = "paused".into(),
                ("resume", "paused") => {
                    ro.state = "running".into();
                    ro.step_started_ms = now_ms();
                }
                ("abort", "running" | "paused") => {
                    ro.state = "aborted".into();
                    ro.reason = Some(format!("aborted by {actor}: {}", req.reason));
                    r.canary_bps = 0;
                }
                (a, s) => return Err(conflict(format!("cannot {a} a rollout that is {s}"))),
            }
        }
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_action",
                format!("`{other}` is not start, pause, resume or abort"),
            ));
        }
    }
    compile(&table).map_err(ApiError::from_config)?;
    let rec = c
        .commit(
            &actor,
            &format!("rollout-{}", req.action),
            table,
            req.reason,
            None,
        )
        .await?;
    let rollout = rec
        .table
        .regions
        .get(&region)
        .and_then(|r| r.rollout.clone());
    Ok((
        StatusCode::OK,
        Json(json!({ "version": rec.version, "rollout": rollout })),
    )
        .into_response())
}
