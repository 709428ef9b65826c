//! `health` and each region's `health`: active-probe settings, a region's
//! overriding only what it names of the table-wide ones.

use std::time::Duration;

use crate::check::Errors;
use crate::model::{HealthSettings, ProbeKind};
use crate::wire::HealthSpec;

/// `h` (at `path`) applied over `base`.
pub(crate) fn health(
    path: &str,
    h: &HealthSpec,
    base: &HealthSettings,
    errs: &mut Errors,
) -> HealthSettings {
    let mut out = base.clone();
    if let Some(kind) = &h.kind {
        match kind.as_str() {
            "http" => out.kind = ProbeKind::Http,
            "tcp" => out.kind = ProbeKind::Tcp,
            other => errs.push(
                format!("{path}.kind"),
                format!("`{other}` is not a probe kind; use http or tcp"),
            ),
        }
    }
    if let Some(p) = &h.path {
        let ok = p.starts_with('/')
            && !p
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
        if errs.check(
            ok,
            format!("{path}.path"),
            "must start with '/' and contain no spaces",
        ) {
            out.path = p.clone();
        }
    }
    let interval = format!("{path}.interval_ms");
    if let Some(ms) = errs.in_range(interval, h.interval_ms, 100..=3_600_000, "") {
        out.interval = Duration::from_millis(ms);
    }
    if let Some(ms) = errs.in_range(format!("{path}.timeout_ms"), h.timeout_ms, 1..=60_000, "") {
        out.timeout = Duration::from_millis(ms);
    }
    errs.check(
        out.timeout <= out.interval,
        format!("{path}.timeout_ms"),
        format!(
            "timeout {:?} is longer than the interval {:?}",
            out.timeout, out.interval
        ),
    );
    if let Some(s) = h.expect_status {
        if errs.check(
            (100..=599).contains(&s),
            format!("{path}.expect_status"),
            format!("{s} is not an HTTP status"),
        ) {
            out.expect_status = s;
        }
    }
    if let Some(b) = &h.expect_body {
        out.expect_body = Some(b.clone());
    }
    let forget = format!("{path}.dns_forget_after_ms");
    if let Some(ms) = errs.in_range(forget, h.dns_forget_after_ms, 1_000..=86_400_000, "") {
        out.dns_forget_after = Duration::from_millis(ms);
    }
    for (field, value, slot) in [
        (
            "unhealthy_after",
            h.unhealthy_after,
            &mut out.unhealthy_after,
        ),
        ("healthy_after", h.healthy_after, &mut out.healthy_after),
    ] {
        if let Some(n) = errs.in_range(format!("{path}.{field}"), value, 1..=100, "") {
            *slot = n;
        }
    }
    out
}
