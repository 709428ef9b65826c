//! `zones` and each region's `zone`: which countries a zone confines,
//! which regions belong to it, and the zone facts later sections check
//! their paths against ([`Zoning`]).

use std::collections::HashMap;

use super::lookup::{country, list, RegionIds};
use crate::check::Errors;
use crate::geo_codes::COUNTRY_SLOTS;
use crate::model::{RegionId, RegionSet, Zone, ZoneId};
use crate::wire::TableSpec;

/// Zones, region ids and who belongs where.
pub(crate) struct Zoning<'a> {
    pub zones: Vec<Zone>,
    /// Region ids in name order (BTreeMap), so ids are deterministic.
    pub region_ids: RegionIds<'a>,
    pub region_zone: Vec<Option<ZoneId>>,
    pub country_zone: Box<[Option<ZoneId>; COUNTRY_SLOTS]>,
    /// Regions outside isolated zones.
    pub unconfined: RegionSet,
}

impl Zoning<'_> {
    /// The isolated zone `r` is in, if it is in one.
    pub fn isolated_of(&self, r: RegionId) -> Option<&Zone> {
        self.region_zone[r.index()]
            .map(|z| &self.zones[usize::from(z.0)])
            .filter(|z| z.isolated)
    }

    /// A zone's name, `(none)` for no zone.
    pub fn zone_name(&self, z: Option<ZoneId>) -> String {
        z.map_or_else(
            || "(none)".to_string(),
            |z| self.zones[usize::from(z.0)].name.clone(),
        )
    }
}

/// Zones first (regions refer to them), then each region's zone. `None`
/// when there are too many zones to number.
pub(crate) fn zoning<'a>(spec: &'a TableSpec, errs: &mut Errors) -> Option<Zoning<'a>> {
    let mut zone_ids: HashMap<&str, ZoneId> = HashMap::new();
    for (i, name) in spec.zones.keys().enumerate() {
        errs.name(format!("zones.{name}"), name);
        zone_ids.insert(name.as_str(), ZoneId(i as u8));
    }
    if spec.zones.len() > usize::from(u8::MAX) {
        errs.push("zones", "at most 255 zones are supported");
        return None;
    }
    let (mut zones, country_zone) = confined_countries(spec, &zone_ids, errs);
    let region_ids: RegionIds = spec
        .regions
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), RegionId(i as u8)))
        .collect();
    let mut region_zone = Vec::with_capacity(spec.regions.len());
    for (name, r) in &spec.regions {
        errs.name(format!("regions.{name}"), name);
        let zone = r.zone.as_ref().and_then(|z| {
            let id = zone_ids.get(z.as_str()).copied();
            errs.check(
                id.is_some(),
                format!("regions.{name}.zone"),
                format!(
                    "unknown zone `{z}`; declared zones: {}",
                    list(spec.zones.keys())
                ),
            );
            id
        });
        if let Some(z) = zone {
            zones[usize::from(z.0)]
                .regions
                .insert(region_ids[name.as_str()]);
        }
        region_zone.push(zone);
    }
    for z in &zones {
        errs.check(
            z.countries.is_empty() || !z.regions.is_empty(),
            format!("zones.{}", z.name),
            "zone confines countries but no region belongs to it; its clients could never be served",
        );
    }
    let mut zoning = Zoning {
        zones,
        region_ids,
        region_zone,
        country_zone,
        unconfined: RegionSet::EMPTY,
    };
    for i in 0..spec.regions.len() {
        let id = RegionId(i as u8);
        if zoning.isolated_of(id).is_none() {
            zoning.unconfined.insert(id);
        }
    }
    Some(zoning)
}

type CountryZones = Box<[Option<ZoneId>; COUNTRY_SLOTS]>;

/// Each zone's countries; a country belongs to at most one zone.
fn confined_countries(
    spec: &TableSpec,
    zone_ids: &HashMap<&str, ZoneId>,
    errs: &mut Errors,
) -> (Vec<Zone>, CountryZones) {
    let mut zones = Vec::with_capacity(spec.zones.len());
    let mut country_zone: CountryZones = Box::new([None; COUNTRY_SLOTS]);
    for (name, z) in &spec.zones {
        let id = zone_ids[name.as_str()];
        let mut countries = Vec::new();
        for (i, code) in z.countries.iter().enumerate() {
            let path = format!("zones.{name}.countries[{i}]");
            let Some(c) = country(errs, &path, code) else {
                continue;
            };
            match country_zone[c.index()] {
                Some(other) if other == id => errs.push(path, format!("{c} is listed twice")),
                Some(other) => {
                    let other_name = spec
                        .zones
                        .keys()
                        .nth(usize::from(other.0))
                        .cloned()
                        .unwrap_or_default();
                    errs.push(path, format!("{c} is already confined to zone {other_name}; a country belongs to at most one zone"));
                }
                None => {
                    country_zone[c.index()] = Some(id);
                    countries.push(c);
                }
            }
        }
        zones.push(Zone {
            id,
            name: name.clone(),
            isolated: z.isolated,
            countries,
            regions: RegionSet::EMPTY,
        });
    }
    (zones, country_zone)
}
