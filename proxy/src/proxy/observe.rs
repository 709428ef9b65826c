//! The logging phase: gauges, request metrics, the per-track stats the
//! rollout controller judges canaries by, failover and track-fallback
//! counts, and the access-log record.

use pingora_proxy::Session;

use super::ctx::{host_of, Ctx};
use crate::access_log::AccessRecord;
use crate::steer::Steering;
use edgesteer_config::route::Reason;

/// Everything recorded once a request is over, answered or not.
pub(super) fn request_done(steer: &Steering, session: &Session, ctx: &Ctx) {
    if ctx.active {
        steer.metrics.downstream_active.dec();
    }
    if ctx.upstream_held {
        steer.metrics.upstream_active.dec();
    }
    if !ctx.active {
        // Never reached `request_filter`: nothing was steered to record.
        return;
    }
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let snap = &*ctx.snap;
    let region = ctx.route.sent().map(|r| r.region.index());
    let track = ctx.route.route().map_or(0, |r| r.track.index());
    let elapsed = ctx.start.elapsed();
    if let Some(m) = snap.region_metrics(region).filter(|_| steer.record_metrics) {
        m.request(track, status);
        if let Some(h) = m.duration.get(track) {
            h.observe(elapsed.as_secs_f64());
        }
    }
    // Rollout gates judge the backend: the upstream's time to the head
    // (the whole time only when no head came, e.g. a 502 or 504). A client
    // that left before any head, or whose body stopped arriving, says
    // nothing about the backend and is not counted.
    let judged = !ctx.client_fault && (status != 0 || ctx.upstream_head.is_some());
    if let Some(s) = region
        .and_then(|r| snap.stats.get(r))
        .and_then(|s| s.tracks.get(track))
        .filter(|_| judged)
    {
        s.record(status, ctx.upstream_head.unwrap_or(elapsed));
    }
    if snap.table.access_log {
        if let Some(log) = &steer.access_log {
            log.write(access_record(session, ctx, status).to_line());
        }
    }
    count_detours(steer, ctx);
}

/// An attempt the backend failed (refused, reset, timed out) that is
/// about to be retried: the rollout stats count it against the route it
/// was sent to, as a 502 after the attempt's time, so a canary whose
/// failures retries hide from users still fails its error-rate gate. The
/// retry's own outcome is recorded when the request ends, against the
/// route that answered.
pub(super) fn attempt_failed(ctx: &Ctx) {
    let Some(route) = ctx.route.sent() else {
        return;
    };
    let took = ctx
        .upstream_start
        .map_or(ctx.start.elapsed(), |t| t.elapsed());
    if let Some(s) = ctx
        .snap
        .stats
        .get(route.region.index())
        .and_then(|s| s.tracks.get(route.track.index()))
    {
        s.record(502, took);
    }
}

/// Track fallbacks and failovers (including the RTT fallback) of a request
/// that was sent.
fn count_detours(steer: &Steering, ctx: &Ctx) {
    let Some(route) = ctx.route.sent() else {
        return;
    };
    let t = &ctx.snap.table;
    if route.track_fallback {
        let assigned = route.track.other();
        steer
            .metrics
            .track_fallbacks
            .with_label_values(&[&t.region(route.region).name, assigned.as_str()])
            .inc();
    }
    if let Some(class) = ctx.class {
        if matches!(route.reason, Reason::Failover | Reason::LatencyFallback) {
            let from = ctx.pin.unwrap_or(class.home);
            steer
                .metrics
                .failovers
                .with_label_values(&[
                    &t.region(from).name,
                    &t.region(route.region).name,
                    route.reason.as_str(),
                ])
                .inc();
        }
    }
}

/// The access-log record of a finished request.
fn access_record<'a>(session: &'a Session, ctx: &'a Ctx, status: u16) -> AccessRecord<'a> {
    let t = &ctx.snap.table;
    let req = session.req_header();
    let served = ctx.route.sent();
    let reason = match (ctx.refusal, served) {
        (Some(kind), _) => kind.reason(),
        (None, Some(r)) => r.reason.as_str(),
        (None, None) => "error",
    };
    AccessRecord {
        ts: humantime::format_rfc3339_millis(std::time::SystemTime::now()),
        client: ctx.client,
        country: ctx.geo.country.map(|c| c.as_str()),
        zone: ctx
            .class
            .and_then(|c| c.zone)
            .map(|z| t.zone(z).name.as_str()),
        region: served.map(|r| t.region(r.region).name.as_str()),
        backend: served.and(ctx.peer_addr),
        track: served.map(|r| r.track.as_str()),
        status,
        method: req.method.as_str(),
        host: host_of(req).map(crate::access_log::clip),
        path: crate::access_log::clip(req.uri.path()),
        duration_ms: ctx.start.elapsed().as_secs_f64() * 1000.0,
        upstream_ms: ctx
            .upstream_start
            .map(|u| u.elapsed().as_secs_f64() * 1000.0),
        bytes_sent: session.as_downstream().body_bytes_sent(),
        attempts: ctx.attempts(),
        version: ctx.snap.version,
        reason,
    }
}
