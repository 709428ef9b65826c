//! `retry` and `outlier`: how the proxy treats upstreams that fail, by
//! retrying a request and by ejecting a backend for a while.

use std::time::Duration;

use crate::check::Errors;
use crate::model::{OutlierSettings, RetrySettings};
use crate::wire::TableSpec;

pub(crate) fn retry(spec: &TableSpec, errs: &mut Errors) -> RetrySettings {
    let mut out = RetrySettings::default();
    let r = &spec.retry;
    if let Some(n) = errs.in_range("retry.max_attempts", r.max_attempts, 1..=10, "") {
        out.max_attempts = n;
    }
    for (field, value, slot) in [
        (
            "connect_timeout_ms",
            r.connect_timeout_ms,
            &mut out.connect_timeout,
        ),
        (
            "per_try_timeout_ms",
            r.per_try_timeout_ms,
            &mut out.per_try_timeout,
        ),
        (
            "total_timeout_ms",
            r.total_timeout_ms,
            &mut out.total_timeout,
        ),
    ] {
        if let Some(ms) = errs.in_range(format!("retry.{field}"), value, 1..=600_000, "") {
            *slot = Duration::from_millis(ms);
        }
    }
    out
}

pub(crate) fn outlier(spec: &TableSpec, errs: &mut Errors) -> OutlierSettings {
    let mut out = OutlierSettings::default();
    let o = &spec.outlier;
    for (field, value, slot) in [
        (
            "consecutive_failures",
            o.consecutive_failures,
            &mut out.consecutive_failures,
        ),
        (
            "consecutive_5xx",
            o.consecutive_5xx,
            &mut out.consecutive_5xx,
        ),
    ] {
        let path = format!("outlier.{field}");
        if let Some(n) = errs.in_range(path, value, 0..=1000, " (0 disables)") {
            *slot = n;
        }
    }
    for (field, value, slot) in [
        (
            "base_ejection_ms",
            o.base_ejection_ms,
            &mut out.base_ejection,
        ),
        ("max_ejection_ms", o.max_ejection_ms, &mut out.max_ejection),
    ] {
        let path = format!("outlier.{field}");
        if let Some(ms) = errs.in_range(path, value, 1..=86_400_000, "") {
            *slot = Duration::from_millis(ms);
        }
    }
    errs.check(
        out.max_ejection >= out.base_ejection,
        "outlier.max_ejection_ms",
        "shorter than base_ejection_ms",
    );
    if let Some(p) = o.max_ejection_percent {
        if errs.check(
            p <= 100,
            "outlier.max_ejection_percent",
            format!("{p} is over 100"),
        ) {
            out.max_ejection_percent = p;
        }
    }
    out
}
