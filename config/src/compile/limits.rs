//! `[limits]`: the downstream limits, each in a range that keeps the proxy
//! usable (no zero timeouts) and bounded (no unbounded holds).

use std::time::Duration;

use crate::check::Errors;
use crate::limits::DownstreamLimits;
use crate::wire::TableSpec;

pub(crate) fn limits(spec: &TableSpec, errs: &mut Errors) -> DownstreamLimits {
    let mut out = DownstreamLimits::default();
    let l = &spec.limits;
    for (field, value, slot) in [
        ("head_timeout_ms", l.head_timeout_ms, &mut out.head_timeout),
        (
            "keepalive_idle_ms",
            l.keepalive_idle_ms,
            &mut out.keepalive_idle,
        ),
        (
            "body_read_idle_ms",
            l.body_read_idle_ms,
            &mut out.body_read_idle,
        ),
        ("write_idle_ms", l.write_idle_ms, &mut out.write_idle),
        ("h2_idle_ms", l.h2_idle_ms, &mut out.h2_idle),
    ] {
        if let Some(ms) = errs.in_range(format!("limits.{field}"), value, 100..=3_600_000, "") {
            *slot = Duration::from_millis(ms);
        }
    }
    // Pingora gives up on a handshake at 60 s whatever is set here.
    let tls = l.tls_handshake_timeout_ms;
    if let Some(ms) = errs.in_range("limits.tls_handshake_timeout_ms", tls, 100..=60_000, "") {
        out.tls_handshake_timeout = Duration::from_millis(ms);
    }
    let rate = errs.in_range(
        "limits.min_send_rate_bps",
        l.min_send_rate_bps,
        1..=1_000_000_000,
        "",
    );
    if let Some(r) = rate {
        out.min_send_rate = usize::try_from(r).ok();
    }
    let max = l.max_requests_per_connection;
    if let Some(n) = errs.in_range("limits.max_requests_per_connection", max, 1..=1_000_000, "") {
        out.max_requests_per_connection = n;
    }
    let conns = l.max_connections;
    if let Some(n) = errs.in_range("limits.max_connections", conns, 1..=1_000_000, "") {
        out.max_connections = n;
    }
    // Pingora's own hard limits (256 headers, a 1 MiB head) are the ceilings.
    for (field, value, range, slot) in [
        (
            "max_header_lines",
            l.max_header_lines,
            1..=256,
            &mut out.max_header_lines,
        ),
        (
            "max_header_line_bytes",
            l.max_header_line_bytes,
            64..=1_048_576,
            &mut out.max_header_line_bytes,
        ),
        (
            "max_head_bytes",
            l.max_head_bytes,
            1024..=1_048_576,
            &mut out.max_head_bytes,
        ),
        (
            "buffer_body_bytes",
            l.buffer_body_bytes,
            0..=1_048_576,
            &mut out.buffer_body_bytes,
        ),
        (
            "response_buffer_bytes",
            l.response_buffer_bytes,
            4096..=16_777_216,
            &mut out.response_buffer_bytes,
        ),
    ] {
        if let Some(n) = errs.in_range(format!("limits.{field}"), value, range, "") {
            *slot = n;
        }
    }
    out
}
