//! Where clients live: `default_region`, `geo.continents` and
//! `geo.countries`, and the rule that every confined country resolves into
//! its zone whichever of those rules resolves it.

use super::lookup::{country, list, region_ref};
use super::zones::Zoning;
use crate::check::Errors;
use crate::geo_codes::{Continent, COUNTRY_SLOTS};
use crate::model::RegionId;
use crate::wire::TableSpec;

/// Home regions by rule, as the model stores them.
pub(crate) struct Homes {
    pub default_region: Option<RegionId>,
    pub continent_home: [Option<RegionId>; 7],
    pub country_home: Box<[Option<RegionId>; COUNTRY_SLOTS]>,
}

pub(crate) fn homes(spec: &TableSpec, zoning: &Zoning, errs: &mut Errors) -> Homes {
    let default_region = default_region(spec, zoning, errs);
    let continent_home = continents(spec, zoning, errs);
    let mut homes = Homes {
        default_region,
        continent_home,
        country_home: countries(spec, zoning, errs),
    };
    if let Some(default_region) = default_region {
        pin_confined(spec, zoning, default_region, &mut homes, errs);
    }
    homes
}

fn default_region(spec: &TableSpec, zoning: &Zoning, errs: &mut Errors) -> Option<RegionId> {
    match zoning.region_ids.get(spec.default_region.as_str()) {
        Some(&r) => {
            if let Some(z) = zoning.isolated_of(r) {
                errs.push("default_region", format!("region {} is in isolated zone {}; clients of unknown location would enter it", spec.default_region, z.name));
            }
            Some(r)
        }
        None => {
            errs.push(
                "default_region",
                format!(
                    "unknown region `{}`; regions: {}",
                    spec.default_region,
                    list(spec.regions.keys())
                ),
            );
            None
        }
    }
}

fn continents(spec: &TableSpec, zoning: &Zoning, errs: &mut Errors) -> [Option<RegionId>; 7] {
    let mut continent_home: [Option<RegionId>; 7] = [None; 7];
    for (code, region) in &spec.geo.continents {
        let path = format!("geo.continents.{code}");
        let Some(c) = Continent::parse(code) else {
            errs.push(
                path,
                format!("`{code}` is not a continent code (AF AN AS EU NA OC SA)"),
            );
            continue;
        };
        let Some(r) = region_ref(errs, &path, region, &zoning.region_ids) else {
            continue;
        };
        if let Some(z) = zoning.isolated_of(r) {
            errs.push(path, format!("region {region} is in isolated zone {}; a continent-wide mapping would send clients from outside the zone into it (map the zone's countries under geo.countries)", z.name));
        }
        continent_home[c.index()] = Some(r);
    }
    continent_home
}

/// Country overrides.
fn countries(
    spec: &TableSpec,
    zoning: &Zoning,
    errs: &mut Errors,
) -> Box<[Option<RegionId>; COUNTRY_SLOTS]> {
    let mut country_home = Box::new([None; COUNTRY_SLOTS]);
    for (code, region) in &spec.geo.countries {
        let path = format!("geo.countries.{code}");
        let Some(c) = country(errs, &path, code) else {
            continue;
        };
        let Some(r) = region_ref(errs, &path, region, &zoning.region_ids) else {
            continue;
        };
        let region_zone = zoning.region_zone[r.index()];
        match zoning.country_zone[c.index()] {
            Some(z) if region_zone != Some(z) => errs.push(
                path,
                format!(
                    "{c} is confined to zone {} but region {region} is in zone {}",
                    zoning.zone_name(Some(z)),
                    zoning.zone_name(region_zone)
                ),
            ),
            None => {
                if let Some(z) = zoning.isolated_of(r) {
                    errs.push(
                        path,
                        format!(
                            "region {region} is in isolated zone {}, which {c} does not belong to",
                            z.name
                        ),
                    );
                }
            }
            _ => {}
        }
        country_home[c.index()] = Some(r);
    }
    country_home
}

/// Every confined country must resolve into its zone, whichever rule
/// resolves it. (Runtime continents come from the database; we check the
/// built-in one and pin the result so they cannot differ.)
fn pin_confined(
    spec: &TableSpec,
    zoning: &Zoning,
    default_region: RegionId,
    homes: &mut Homes,
    errs: &mut Errors,
) {
    for z in &zoning.zones {
        for (i, &c) in z.countries.iter().enumerate() {
            if homes.country_home[c.index()].is_some() {
                continue;
            }
            let via_continent = c
                .builtin_continent()
                .and_then(|k| homes.continent_home[k.index()].map(|r| (k, r)));
            let (home, via) = match via_continent {
                Some((k, r)) => (r, format!("geo.continents.{k}")),
                None => (default_region, "default_region".to_string()),
            };
            if zoning.region_zone[home.index()] != Some(z.id) {
                let home_name = spec
                    .regions
                    .keys()
                    .nth(home.index())
                    .cloned()
                    .unwrap_or_default();
                errs.push(
                    format!("zones.{}.countries[{i}]", z.name),
                    format!("{c} would be routed to {home_name} (via {via}), outside zone {}; add geo.countries.{c} with a region of the zone", z.name),
                );
            } else {
                // Pin it so a database continent can never move it.
                homes.country_home[c.index()] = Some(home);
            }
        }
    }
}
