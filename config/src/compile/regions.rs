//! `regions`: each region's failover list (which must stay inside its
//! zone and out of isolated ones), canary share, capacity, rollout,
//! health and backends.

use std::collections::HashSet;

use super::backends::{region_backends, RegionBackends};
use super::health::health;
use super::lookup::region_ref;
use super::release::rollout;
use super::zones::Zoning;
use crate::check::Errors;
use crate::model::{
    Backend, HealthSettings, Region, RegionId, RolloutState, UpstreamSettings, BUCKETS,
};
use crate::wire::{RegionSpec, TableSpec};

/// All regions, and the table-wide backend list they index.
pub(crate) fn regions(
    spec: &TableSpec,
    zoning: &Zoning,
    default_health: &HealthSettings,
    default_upstream: &std::sync::Arc<UpstreamSettings>,
    errs: &mut Errors,
) -> (Vec<Region>, Vec<Backend>) {
    let mut regions = Vec::with_capacity(spec.regions.len());
    let mut backends: Vec<Backend> = Vec::new();
    for (i, (name, r)) in spec.regions.iter().enumerate() {
        let id = RegionId(i as u8);
        let failover = failover(name, id, r, zoning, errs);
        errs.check(
            r.canary_bps <= BUCKETS,
            format!("regions.{name}.canary_bps"),
            format!("{} is over {BUCKETS} (100%)", r.canary_bps),
        );
        if let Some(c) = r.capacity {
            errs.check(
                c.is_finite() && c > 0.0,
                format!("regions.{name}.capacity"),
                format!("{c} is not a rate above 0 (requests/s)"),
            );
        }
        let (rollout_state, rollout_step) = match &r.rollout {
            None => (RolloutState::Idle, 0),
            Some(ro) => rollout(&format!("regions.{name}.rollout"), ro, errs),
        };
        // A running or paused rollout sets the share to its step's.
        if let Some(step) = r
            .rollout
            .as_ref()
            .filter(|_| matches!(rollout_state, RolloutState::Running | RolloutState::Paused))
            .and_then(|ro| ro.steps.get(rollout_step))
        {
            errs.check(
                r.canary_bps == step.canary_bps,
                format!("regions.{name}.canary_bps"),
                format!(
                    "{} is not the {} bps of the rollout's step {}, which sets it",
                    r.canary_bps,
                    step.canary_bps,
                    rollout_step + 1
                ),
            );
        }
        let health = match &r.health {
            Some(h) => health(&format!("regions.{name}.health"), h, default_health, errs),
            None => default_health.clone(),
        };
        let upstream = match &r.upstream {
            Some(u) => std::sync::Arc::new(super::upstream::settings(
                &format!("regions.{name}.upstream"),
                &spec.upstream.merged(u),
                errs,
            )),
            None => default_upstream.clone(),
        };
        let RegionBackends { ids, tracks } =
            region_backends(name, id, &r.backends, &mut backends, errs);
        regions.push(Region {
            id,
            name: name.clone(),
            zone: zoning.region_zone[i],
            failover,
            canary_bps: r.canary_bps.min(BUCKETS),
            drained: r.drain,
            capacity: r.capacity.filter(|c| c.is_finite() && *c > 0.0),
            rollout_state,
            rollout_step,
            health,
            upstream,
            backends: ids,
            tracks,
        });
    }
    (regions, backends)
}

/// Region `id`'s failover targets: known, not itself, each once, and
/// never across its zone's boundary or into an isolated zone.
fn failover(
    name: &str,
    id: RegionId,
    r: &RegionSpec,
    zoning: &Zoning,
    errs: &mut Errors,
) -> Vec<RegionId> {
    let zone = zoning.region_zone[id.index()];
    let mut failover = Vec::new();
    let mut seen = HashSet::new();
    for (j, target) in r.failover.iter().enumerate() {
        let path = format!("regions.{name}.failover[{j}]");
        let Some(t) = region_ref(errs, &path, target, &zoning.region_ids) else {
            continue;
        };
        if t == id {
            errs.push(path, "a region cannot fail over to itself");
            continue;
        }
        if !seen.insert(t) {
            errs.push(path, format!("{target} is listed twice"));
            continue;
        }
        let tz = zoning.region_zone[t.index()];
        if let Some(z) = zone {
            if tz != Some(z) {
                errs.push(path, format!("{target} is outside zone {} (it is in zone {}); failover would carry the zone's clients across its boundary", zoning.zone_name(Some(z)), zoning.zone_name(tz)));
                continue;
            }
        } else if let Some(iz) = zoning.isolated_of(t) {
            errs.push(
                path,
                format!(
                    "{target} is in isolated zone {}; clients of {name} are not allowed into it",
                    iz.name
                ),
            );
            continue;
        }
        failover.push(t);
    }
    failover
}
