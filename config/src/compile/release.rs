//! `release` and each region's `rollout`: how users are split between the
//! stable and canary tracks, and the plan of a progressive rollout.

use crate::check::Errors;
use crate::model::{ReleaseSettings, RolloutState, StickySource, BUCKETS};
use crate::wire::{RolloutSpec, TableSpec};

pub(crate) fn release(spec: &TableSpec, errs: &mut Errors) -> ReleaseSettings {
    let mut sticky = Vec::new();
    for (i, s) in spec.release.sticky_keys.iter().enumerate() {
        let path = format!("release.sticky_keys[{i}]");
        let parsed = match s.split_once(':') {
            Some(("header", name)) if valid_token(name) => {
                http::HeaderName::from_bytes(name.as_bytes())
                    .ok()
                    .map(StickySource::Header)
            }
            Some(("cookie", name)) if valid_token(name) => {
                Some(StickySource::Cookie(name.to_string()))
            }
            _ => None,
        };
        match parsed {
            Some(p) => sticky.push(p),
            None => errs.push(path, format!("`{s}` is not `header:<name>` or `cookie:<name>` (the client IP is always the last resort)")),
        }
    }
    ReleaseSettings {
        salt: spec
            .release
            .salt
            .clone()
            .unwrap_or_else(|| "edgesteer".into()),
        sticky,
    }
}

/// The longest a rollout step may hold.
const MAX_HOLD_MS: u64 = 30 * 86_400_000;

/// A region's rollout at `path`: its state and current step.
pub(crate) fn rollout(path: &str, ro: &RolloutSpec, errs: &mut Errors) -> (RolloutState, usize) {
    let state = RolloutState::parse(&ro.state).unwrap_or_else(|| {
        errs.push(
            format!("{path}.state"),
            format!(
                "`{}` is not idle, running, paused, completed, rolled_back or aborted",
                ro.state
            ),
        );
        RolloutState::Idle
    });
    errs.check(
        !ro.steps.is_empty(),
        format!("{path}.steps"),
        "a rollout needs at least one step",
    );
    let mut prev = 0;
    for (i, st) in ro.steps.iter().enumerate() {
        errs.check(
            (prev..=BUCKETS).contains(&st.canary_bps),
            format!("{path}.steps[{i}].canary_bps"),
            format!(
                "{} must be in {prev}..=10000 (steps only raise the share)",
                st.canary_bps
            ),
        );
        prev = st.canary_bps;
    }
    errs.check(
        ro.step < ro.steps.len().max(1),
        format!("{path}.step"),
        format!("{} is past the last step", ro.step),
    );
    errs.in_range(
        format!("{path}.max_error_rate"),
        ro.max_error_rate,
        0.0..=1.0,
        "",
    );
    errs.in_range(
        format!("{path}.min_requests"),
        ro.min_requests,
        0..=1_000_000_000,
        "",
    );
    for (i, st) in ro.steps.iter().enumerate() {
        errs.in_range(
            format!("{path}.steps[{i}].hold_ms"),
            Some(st.hold_ms),
            0..=MAX_HOLD_MS,
            " (30 days)",
        );
    }
    if let Some(r) = ro.max_p99_ratio {
        errs.check(
            r >= 1.0 && r.is_finite(),
            format!("{path}.max_p99_ratio"),
            format!("{r} must be at least 1"),
        );
    }
    (state, ro.step)
}

fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
