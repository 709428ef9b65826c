//! Rollout figures: what the proxies reported for each region since its
//! current step began, and the gates judged on them (the controller is in `rollout`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgesteer_config::wire::RolloutSpec;
use edgesteer_config::TableSpec;

use edgesteer_control_api::api::{Figures, Gates, StatsReport, TrackReport};

/// Upper bounds (ms) of the latency buckets; one more bucket catches the rest.
pub use edgesteer_control_api::api::LATENCY_BUCKETS_MS;
/// Canary requests needed before the error-rate gate can fire, and so
/// before a step can advance.
pub const MIN_ERROR_SAMPLE: u64 = 20;
/// The error gate's confidence: one-sided 99% (z). The gate is judged
/// several times a second, so a plain threshold (one 5xx in 20 requests
/// is 5% > 1%) rolled healthy canaries back on noise: one with a true 5xx
/// rate of 0.3% failed a 60 s step at 5 requests/s about a third of the
/// time. At 99% a canary that fails every request is still rolled back at
/// its 20th, one at 5x the limit within about 100.
const ERROR_GATE_Z: f64 = 2.326;

/// The lower end of the Wilson score interval of `errors` in `n` at `z`:
/// the smallest 5xx rate these figures leave likely.
pub(crate) fn error_rate_lower_bound(errors: u64, n: u64, z: f64) -> f64 {
    if n == 0 || errors == 0 {
        return 0.0;
    }
    let (n, p) = (n as f64, errors.min(n) as f64 / n as f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}
/// A proxy's canary-health report counts for this long.
const HEALTH_FRESH: Duration = Duration::from_secs(3);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Gate settings with defaults applied.
pub(crate) fn gates(ro: &RolloutSpec) -> Gates {
    Gates {
        max_error_rate: ro.max_error_rate.unwrap_or(0.01),
        max_p99_ratio: ro.max_p99_ratio.unwrap_or(1.5),
        min_requests: ro.min_requests.unwrap_or(100),
    }
}

/// One track's sums (a rollout step's window; a point of the console's charts).
#[derive(Debug, Default, Clone)]
pub(crate) struct Acc {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    buckets: Vec<u64>,
}

impl Acc {
    /// Adds one report. Counters saturate, and only the known latency
    /// buckets are kept, so no report can overflow or grow the window.
    pub(crate) fn add(&mut self, t: &TrackReport) {
        self.requests = self.requests.saturating_add(t.requests);
        self.errors = self.errors.saturating_add(t.errors.min(t.requests));
        let n = t.buckets.len().min(LATENCY_BUCKETS_MS.len() + 1);
        if self.buckets.len() < n {
            self.buckets.resize(n, 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&t.buckets) {
            *a = a.saturating_add(*b);
        }
    }

    fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    /// p99 as the upper bound of the bucket holding it (ms).
    pub(crate) fn p99_ms(&self) -> f64 {
        // In u128: each bucket saturates at u64::MAX, their sum need not
        // fit a u64 (a report of two huge buckets overflowed here).
        let total: u128 = self.buckets.iter().map(|&n| u128::from(n)).sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (total * 99).div_ceil(100);
        let mut seen = 0u128;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u128::from(*n);
            if seen >= rank {
                return LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(f64::INFINITY);
            }
        }
        f64::INFINITY
    }
}

/// Figures of the current step of one region.
/// Most proxies whose canary health one region's window tracks.
const MAX_REPORTERS: usize = 10_000;

#[derive(Debug, Default)]
struct Window {
    step_key: (u64, usize),
    stable: Acc,
    canary: Acc,
    /// Per proxy: (when reported, unhealthy canary backends).
    canary_health: HashMap<String, (Instant, u32)>,
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

    fn figures(&self) -> Figures {
        let finite = |x: f64| Some(x).filter(|x| x.is_finite());
        Figures {
            canary_requests: self.canary.requests,
            canary_error_rate: self.canary.error_rate(),
            canary_p99_ms: finite(self.canary.p99_ms()),
            stable_requests: self.stable.requests,
            stable_p99_ms: finite(self.stable.p99_ms()),
            unhealthy_canary_backends: self.unhealthy_canaries(),
        }
    }
}

/// What the controller does with a running rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Advance,
    RollBack,
}

fn step_key(ro: &RolloutSpec) -> (u64, usize) {
    (ro.step_started_ms, ro.step)
}

/// The windows of every region, keyed by region name.
#[derive(Debug, Default)]
pub(crate) struct Windows(Mutex<HashMap<String, Window>>);

impl Windows {
    /// Folds a proxy's report into the windows of the rollouts in `table`.
    pub(crate) fn ingest(&self, table: &TableSpec, report: &StatsReport) {
        let Ok(mut windows) = self.0.lock() else {
            return;
        };
        for (region, r) in &report.regions {
            let Some(ro) = table.regions.get(region).and_then(|s| s.rollout.as_ref()) else {
                continue;
            };
            let w = windows.entry(region.clone()).or_default();
            let key = step_key(ro);
            if w.step_key != key {
                *w = Window {
                    step_key: key,
                    ..Window::default()
                };
            }
            w.stable.add(&r.stable);
            w.canary.add(&r.canary);
            // Bounded: stale proxies leave, and past the cap a new name is
            // not tracked (its figures still count).
            w.canary_health
                .retain(|_, (t, _)| t.elapsed() < HEALTH_FRESH);
            if w.canary_health.len() < MAX_REPORTERS || w.canary_health.contains_key(&report.proxy)
            {
                w.canary_health
                    .insert(report.proxy.clone(), (Instant::now(), r.canary_unhealthy));
            }
        }
    }

    /// The figures of `region`'s current step, if any were reported.
    pub(crate) fn figures(&self, region: &str, ro: &RolloutSpec) -> Option<Figures> {
        let windows = self.0.lock().ok()?;
        windows
            .get(region)
            .filter(|w| w.step_key == step_key(ro))
            .map(Window::figures)
    }

    /// The proxies whose stats make up `region`'s current window, sorted.
    pub(crate) fn reporters(&self, region: &str) -> Vec<String> {
        let Ok(windows) = self.0.lock() else {
            return Vec::new();
        };
        let mut names: Vec<String> = windows
            .get(region)
            .map(|w| w.canary_health.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Judges the gates of `region`'s running rollout: a verdict and the
    /// reason for the audit, or `None` to keep going.
    pub(crate) fn judge(&self, region: &str, ro: &RolloutSpec) -> Option<(Verdict, String)> {
        let g = gates(ro);
        let windows = self.0.lock().ok()?;
        let empty = Window::default();
        let w = windows
            .get(region)
            .filter(|w| w.step_key == step_key(ro))
            .unwrap_or(&empty);
        let step = ro.steps.get(ro.step)?;
        let low = error_rate_lower_bound(w.canary.errors, w.canary.requests, ERROR_GATE_Z);
        if w.canary.requests >= MIN_ERROR_SAMPLE && low > g.max_error_rate {
            return Some((
                Verdict::RollBack,
                format!(
                    "gate error_rate failed at step {} ({} bps): canary 5xx rate {:.2}% over {} requests > {:.2}% (at least {:.2}% at 99% confidence)",
                    ro.step + 1,
                    step.canary_bps,
                    w.canary.error_rate() * 100.0,
                    w.canary.requests,
                    g.max_error_rate * 100.0,
                    low * 100.0
                ),
            ));
        }
        let (max_ratio, min_requests) = (g.max_p99_ratio, g.min_requests);
        if w.canary.requests >= min_requests && w.stable.requests >= min_requests {
            let (c, s) = (w.canary.p99_ms(), w.stable.p99_ms());
            if c > s * max_ratio && c > LATENCY_BUCKETS_MS[0] {
                return Some((
                    Verdict::RollBack,
                    format!("gate p99 failed at step {}: canary p99 {c} ms > {max_ratio} x stable p99 {s} ms", ro.step + 1),
                ));
            }
        }
        // Advancing needs every gate judged and passed: the error gate's
        // sample at least, a 5xx rate within the limit (one above it but
        // not yet surely so waits for more requests), and the p99 gate,
        // except at a full share, where stable has no traffic left.
        let held = now_ms().saturating_sub(ro.step_started_ms) >= step.hold_ms;
        let enough = w.canary.requests >= min_requests.max(MIN_ERROR_SAMPLE);
        let p99_judged = step.canary_bps >= 10_000 || w.stable.requests >= min_requests;
        let within = w.canary.error_rate() <= g.max_error_rate;
        if held && enough && within && p99_judged && w.unhealthy_canaries() == 0 {
            return Some((
                Verdict::Advance,
                format!(
                    "step {} ({} bps) held {} ms: {} canary requests, 5xx {:.2}%, p99 {} ms (stable {} ms)",
                    ro.step + 1,
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
}

#[cfg(test)]
mod tests;
