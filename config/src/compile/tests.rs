//! Tests of `compile`: covergen's classification and host pins, and the
//! failover, zone and geo rules; the other field rules (backends, health,
//! outliers, limits, parsing) are in `tests/rules.rs`, which uses the
//! helpers here.

use super::*;
use crate::error::FieldError;
use crate::geo_codes::{Continent, Country};
use crate::parse;
use crate::wire::RegionSpec;
use crate::COVERGEN_TOML;

mod rollouts;
mod rules;

fn covergen() -> TableSpec {
    parse::from_toml(COVERGEN_TOML).unwrap()
}

/// Compiles `spec` and returns the error paths and reasons.
fn errors(spec: &TableSpec) -> Vec<FieldError> {
    match compile(spec) {
        Ok(_) => panic!("table unexpectedly compiled"),
        Err(e) => e.errors().to_vec(),
    }
}

/// Asserts exactly one error, at `path`, whose reason mentions `needle`.
fn assert_one_error(spec: &TableSpec, path: &str, needle: &str) {
    let errs = errors(spec);
    assert_eq!(errs.len(), 1, "expected one error at {path}, got {errs:#?}");
    assert_eq!(errs[0].path, path, "{errs:#?}");
    assert!(
        errs[0].reason.contains(needle),
        "reason {:?} lacks {needle:?}",
        errs[0].reason
    );
}

fn region<'a>(spec: &'a mut TableSpec, name: &str) -> &'a mut RegionSpec {
    spec.regions.get_mut(name).unwrap()
}

#[test]
fn covergen_compiles_and_classifies() {
    let t = compile(&covergen()).unwrap();
    assert_eq!(t.regions.len(), 8);
    let home = |cc: &str| {
        let c = t.classify(Country::parse(cc), None);
        (
            t.region(c.home).name.as_str(),
            c.zone.map(|z| t.zone(z).name.as_str()),
        )
    };
    assert_eq!(home("US"), ("us-east", None));
    assert_eq!(home("BR"), ("us-east", None));
    assert_eq!(home("DE"), ("eu-west", Some("eu")));
    assert_eq!(home("GB"), ("eu-west", None));
    assert_eq!(home("ZA"), ("eu-west", None));
    assert_eq!(home("NG"), ("eu-west", None));
    assert_eq!(home("AE"), ("eu-west", None));
    assert_eq!(home("CN"), ("cn-east", Some("cn")));
    assert_eq!(home("HK"), ("ap-southeast", None));
    assert_eq!(home("TW"), ("ap-southeast", None));
    assert_eq!(home("MO"), ("ap-southeast", None));
    assert_eq!(home("JP"), ("ap-southeast", None));
    assert_eq!(home("AU"), ("ap-southeast", None));
    assert_eq!(home("CY"), ("eu-west", Some("eu")));
    assert_eq!(home("RE"), ("eu-west", Some("eu")));
    let unknown = t.classify(None, None);
    assert_eq!(t.region(unknown.home).name, "us-east");
    // The isolated zone is closed to everyone else; eu is open.
    let cn = t.region_by_name("cn-east").unwrap();
    let eu = t.region_by_name("eu-west").unwrap();
    let us = t.region_by_name("us-east").unwrap();
    let ae = t.classify(Country::parse("AE"), None);
    assert!(!ae.allowed.contains(cn) && ae.allowed.contains(eu) && ae.allowed.contains(us));
    let de = t.classify(Country::parse("DE"), None);
    assert_eq!(de.allowed.len(), 2);
    assert!(!de.allowed.contains(us));
    let cnc = t.classify(Country::parse("CN"), None);
    assert_eq!(cnc.allowed.len(), 2);
    assert!(cnc.allowed.contains(cn));
}

#[test]
fn database_continent_cannot_move_a_confined_country() {
    let t = compile(&covergen()).unwrap();
    // A database that claims Cyprus is in Asia still keeps it in zone eu.
    let c = t.classify(Country::parse("CY"), Some(Continent::Asia));
    assert_eq!(t.region(c.home).name, "eu-west");
    // An unconfined country follows the database continent.
    let c = t.classify(Country::parse("GB"), Some(Continent::NorthAmerica));
    assert_eq!(t.region(c.home).name, "us-east");
}

#[test]
fn host_pins_ignore_case_and_port() {
    let t = compile(&covergen()).unwrap();
    let eu = t.region_by_name("eu-west");
    assert_eq!(t.pin_for_host("api-eu.covergen.ai"), eu);
    assert_eq!(t.pin_for_host("API-EU.covergen.ai:443"), eu);
    assert_eq!(t.pin_for_host("api-eu.covergen.ai."), eu);
    assert_eq!(t.pin_for_host("api.covergen.ai"), None);
}

#[test]
fn cn_failover_out_of_zone_is_rejected() {
    let mut s = covergen();
    region(&mut s, "cn-east").failover = vec!["ap-southeast".into()];
    assert_one_error(&s, "regions.cn-east.failover[0]", "outside zone cn");
}

#[test]
fn eu_failover_out_of_zone_is_rejected() {
    let mut s = covergen();
    region(&mut s, "eu-west").failover = vec!["eu-central".into(), "us-east".into()];
    assert_one_error(&s, "regions.eu-west.failover[1]", "outside zone eu");
}

#[test]
fn failover_into_isolated_zone_is_rejected() {
    let mut s = covergen();
    region(&mut s, "ap-southeast").failover = vec!["cn-east".into()];
    assert_one_error(&s, "regions.ap-southeast.failover[0]", "isolated zone cn");
}

#[test]
fn failover_unknown_self_and_duplicate() {
    let mut s = covergen();
    region(&mut s, "us-east").failover = vec![
        "us-mars".into(),
        "us-east".into(),
        "us-west".into(),
        "us-west".into(),
    ];
    let errs = errors(&s);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "regions.us-east.failover[0]",
            "regions.us-east.failover[1]",
            "regions.us-east.failover[3]"
        ]
    );
    assert!(errs[0].reason.contains("unknown region `us-mars`"));
    assert!(errs[1].reason.contains("itself"));
    assert!(errs[2].reason.contains("twice"));
}

#[test]
fn default_region_rules() {
    let mut s = covergen();
    s.default_region = "cn-east".into();
    assert_one_error(&s, "default_region", "isolated zone cn");
    s.default_region = "nowhere".into();
    assert_one_error(&s, "default_region", "unknown region `nowhere`");
}

#[test]
fn continent_into_isolated_zone_is_rejected() {
    let mut s = covergen();
    s.geo.continents.insert("AS".into(), "cn-east".into());
    assert_one_error(&s, "geo.continents.AS", "isolated zone cn");
}

#[test]
fn bad_continent_code() {
    let mut s = covergen();
    s.geo.continents.insert("XX".into(), "us-east".into());
    assert_one_error(&s, "geo.continents.XX", "not a continent code");
}

#[test]
fn non_confined_country_into_isolated_zone_is_rejected() {
    let mut s = covergen();
    s.geo.countries.insert("HK".into(), "cn-east".into());
    assert_one_error(&s, "geo.countries.HK", "isolated zone cn");
}

#[test]
fn confined_country_mapped_out_of_zone_is_rejected() {
    let mut s = covergen();
    s.geo.countries.insert("CN".into(), "ap-southeast".into());
    assert_one_error(&s, "geo.countries.CN", "confined to zone cn");
}

#[test]
fn confined_country_falling_through_to_continent_is_rejected() {
    let mut s = covergen();
    s.geo.countries.remove("CN");
    assert_one_error(&s, "zones.cn.countries[0]", "via geo.continents.AS");
    let mut s = covergen();
    s.geo.countries.remove("CY");
    let errs = errors(&s);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].path.starts_with("zones.eu.countries["));
    assert!(errs[0]
        .reason
        .contains("CY would be routed to ap-southeast"));
}

#[test]
fn country_in_two_zones_and_bad_codes() {
    let mut s = covergen();
    s.zones.get_mut("eu").unwrap().countries.push("CN".into());
    let errs = errors(&s);
    assert!(
        errs.iter()
            .any(|e| e.path.starts_with("zones.") && e.reason.contains("at most one zone")),
        "{errs:#?}"
    );
    let mut s = covergen();
    s.zones
        .get_mut("cn")
        .unwrap()
        .countries
        .push("china".into());
    assert_one_error(&s, "zones.cn.countries[1]", "not an upper-case ISO-3166");
    let mut s = covergen();
    s.geo.countries.insert("de".into(), "eu-west".into());
    assert_one_error(&s, "geo.countries.de", "not an upper-case ISO-3166");
}

#[test]
fn zone_without_regions_is_rejected() {
    let mut s = covergen();
    s.zones.insert(
        "ru".into(),
        crate::wire::ZoneSpec {
            isolated: true,
            countries: vec!["RU".into()],
        },
    );
    let errs = errors(&s);
    assert!(
        errs.iter()
            .any(|e| e.path == "zones.ru" && e.reason.contains("no region belongs")),
        "{errs:#?}"
    );
}

#[test]
fn unknown_zone_on_region() {
    let mut s = covergen();
    region(&mut s, "us-west").zone = Some("us".into());
    assert_one_error(&s, "regions.us-west.zone", "unknown zone `us`");
}
