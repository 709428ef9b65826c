//! Steering: geo lookup, classification, host pin, sticky key and the pure
//! `decide()`, run once per request on the snapshot in the context. A pin
//! across zones (421) and an exhausted zone (503) are answered here,
//! before any upstream work.

use edgesteer_config::route::{decide, Decision, Request};
use edgesteer_config::ZoneId;
use edgesteer_geo::GeoLookup;
use pingora_core::Result;
use pingora_proxy::Session;

use super::ctx::{host_of, Ctx, RouteState};
use super::refusal::{zone_name, Refusal, RefusalKind};
use crate::steer::Steering;
use crate::sticky::sticky_of;

/// Decides where the request goes. Returns true when it was refused and
/// answered instead.
pub(super) async fn route(steer: &Steering, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let snap = &*ctx.snap;
    let table = &snap.table;
    let req = session.req_header();
    ctx.geo = steer.geo.lookup(ctx.client);
    steer.metrics.geo_lookup(ctx.geo.status);
    let class = table.classify(ctx.geo.country, ctx.geo.continent);
    ctx.class = Some(class);
    let pin = host_of(req).and_then(|h| table.pin_slot_for_host(h));
    ctx.pin = pin.map(|(_, r)| r);
    snap.traffic
        .count(ctx.geo.country, pin.map(|(slot, _)| slot));
    ctx.sticky = sticky_of(table, &req.headers, ctx.client);
    let request = Request {
        class,
        pin: ctx.pin,
        sticky: ctx.sticky,
        tried: &[],
    };
    let refusal = match decide(table, &request, &snap.health) {
        Decision::Route(route) => {
            ctx.route = RouteState::Decided(route);
            return Ok(false);
        }
        Decision::PinOutsideZone { pinned, zone } => {
            ctx.refusal = Some(RefusalKind::PinOutsideZone);
            steer
                .metrics
                .pin_refused
                .with_label_values(&[zone_name(table, zone)])
                .inc();
            Refusal::pin_outside_zone(table, pinned, zone)
        }
        Decision::NoHealthyBackend { zone } => {
            Refusal::zone_exhausted(fail_closed(steer, ctx, zone))
        }
    };
    refusal.write(session).await?;
    Ok(true)
}

/// Marks the request as failed closed in `zone` and counts it; returns the
/// zone's name.
pub(super) fn fail_closed<'a>(steer: &Steering, ctx: &'a mut Ctx, zone: Option<ZoneId>) -> &'a str {
    ctx.refusal = Some(RefusalKind::ZoneExhausted);
    let name = zone_name(&ctx.snap.table, zone);
    steer.metrics.zone_blocked.with_label_values(&[name]).inc();
    name
}
