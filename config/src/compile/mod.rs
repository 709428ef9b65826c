//! [`TableSpec`] -> [`RoutingTable`]: every rule is checked once, here, and
//! all broken rules are reported together so an operator fixes a table in
//! one pass.
//!
//! The zone rules are what make routing safe: after compile, no failover
//! list, continent or country mapping, default region or canary path can
//! move a client across a compliance boundary. Host pins are the one input
//! chosen by the client; they are checked per request against the client's
//! allowed set and refused with 421, and here only for existence.
//!
//! One file per section of the table, called in the order their errors are
//! reported: `zones`, `geo` (default region, continents, countries),
//! `pins`, `client_ip`, `health`, `release` (and rollouts), `upstream`
//! (retry, outlier), then rate limits (the `ratelimit` module), `regions`
//! (failover, canary, `backends`) and `[dns]` (`crate::dns::compile`). `lookup` resolves names between them.

mod backends;
mod client_ip;
mod geo;
mod health;
mod limits;
pub(crate) mod lookup;
mod pins;
mod regions;
mod release;
mod upstream;
mod zones;

use crate::check::Errors;
use crate::error::ConfigError;
use crate::model::{HeaderSettings, HealthSettings, RoutingTable, MAX_REGIONS};
use crate::ratelimit::compile_policies;
use crate::wire::TableSpec;

/// Validates `spec` and builds the immutable table the hot path reads.
pub fn compile(spec: &TableSpec) -> Result<RoutingTable, ConfigError> {
    let mut errs = Errors::default();
    let table = build(spec, &mut errs);
    errs.finish(table)
}

/// Every section in turn; `None` when the table cannot be numbered at all
/// (no regions, too many regions or zones) or has no default region.
fn build(spec: &TableSpec, errs: &mut Errors) -> Option<RoutingTable> {
    let files_read_at = std::time::SystemTime::now();
    if spec.regions.is_empty() {
        errs.push("regions", "at least one region is required");
        return None;
    }
    if spec.regions.len() > MAX_REGIONS {
        errs.push(
            "regions",
            format!(
                "{} regions; at most {MAX_REGIONS} are supported",
                spec.regions.len()
            ),
        );
        return None;
    }
    let zoning = zones::zoning(spec, errs)?;
    let homes = geo::homes(spec, &zoning, errs);
    let pin_list = pins::pins(spec, &zoning.region_ids, errs);
    let trusted_proxies = client_ip::trusted_proxies(&spec.client_ip.trusted_proxies, errs);
    let default_health = health::health("health", &spec.health, &HealthSettings::default(), errs);
    let release = release::release(spec, errs);
    let retry = upstream::retry(spec, errs);
    let outlier = upstream::outlier(spec, errs);
    let limits = limits::limits(spec, errs);
    let rate_limits = compile_policies(spec, errs);
    let default_upstream =
        std::sync::Arc::new(upstream::settings("upstream", &spec.upstream, errs));
    let (regions, backends) =
        regions::regions(spec, &zoning, &default_health, &default_upstream, errs);
    let dns = spec.dns.as_ref().and_then(|d| {
        crate::dns::compile::dns_zone(d, &zoning.region_ids, &pin_list, errs)
            .map(std::sync::Arc::new)
    });
    Some(RoutingTable {
        description: spec.description.clone(),
        regions,
        zones: zoning.zones,
        backends,
        default_region: homes.default_region?,
        headers: HeaderSettings {
            track: spec.headers.track,
            version: spec.headers.version,
        },
        access_log: spec.logging.access_log,
        release,
        retry,
        outlier,
        limits,
        rate_limits,
        trusted_proxies,
        continent_home: homes.continent_home,
        country_home: homes.country_home,
        country_zone: zoning.country_zone,
        unconfined: zoning.unconfined,
        pins: crate::host::HostPins::new(pin_list),
        dns,
        files_read_at,
    })
}

#[cfg(test)]
mod tests;
