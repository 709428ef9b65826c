//! The zone oracle the property tests and the DNS model check share:
//! which regions a client from a country may use, read from the table as
//! written (not from the compiled model under test).

use std::collections::BTreeMap;

use edgesteer_config::TableSpec;

/// The regions a client from `country` may be served by, from the spec.
pub fn oracle_allowed(spec: &TableSpec, country: Option<&str>) -> BTreeMap<String, bool> {
    let confining = country.and_then(|c| {
        spec.zones
            .iter()
            .find(|(_, z)| z.countries.iter().any(|x| x == c))
            .map(|(n, _)| n.clone())
    });
    spec.regions
        .iter()
        .map(|(name, r)| {
            let ok = match &confining {
                Some(z) => r.zone.as_deref() == Some(z.as_str()),
                None => r.zone.as_ref().is_none_or(|z| !spec.zones[z].isolated),
            };
            (name.clone(), ok)
        })
        .collect()
}
