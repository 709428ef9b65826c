#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Zone compilation edges, each with its expected answer written out: the
//! zone count limit (255 compile, 256 are refused), a country listed twice
//! in one zone against a country claimed by two zones, and what a zone
//! confines once compiled (its countries, its regions, the open set).

use edgesteer_config::wire::{BackendSpec, RegionSpec, TableSpec, ZoneSpec};
use edgesteer_config::{compile, Country, FieldError};

fn region(zone: Option<&str>, n: u8) -> RegionSpec {
    RegionSpec {
        zone: zone.map(Into::into),
        backends: vec![BackendSpec {
            address: format!("127.0.0.{n}:80"),
            weight: 1,
            track: None,
        }],
        ..Default::default()
    }
}

fn zone(isolated: bool, countries: &[&str]) -> ZoneSpec {
    ZoneSpec {
        isolated,
        countries: countries.iter().map(|c| c.to_string()).collect(),
    }
}

/// An open default region `a` and `n` empty zones `z000`...
fn with_zones(n: usize) -> TableSpec {
    let mut spec = TableSpec {
        default_region: "a".into(),
        ..Default::default()
    };
    spec.regions.insert("a".into(), region(None, 1));
    for i in 0..n {
        spec.zones.insert(format!("z{i:03}"), zone(false, &[]));
    }
    spec
}

/// Maps each country to `home` (a confined country must be sent into its zone).
fn home(spec: &mut TableSpec, countries: &[&str], home: &str) {
    for c in countries {
        spec.geo.countries.insert(c.to_string(), home.into());
    }
}

fn errors(spec: &TableSpec) -> Vec<FieldError> {
    match compile(spec) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors().to_vec(),
    }
}

#[test]
fn up_to_255_zones_compile_and_256_do_not() {
    for n in [0, 1, 254, 255] {
        let t = compile(&with_zones(n)).unwrap_or_else(|e| panic!("{n} zones: {e}"));
        assert_eq!(t.zones.len(), n);
        if let Some(last) = t.zones.last() {
            assert_eq!(usize::from(last.id.0), n - 1);
        }
    }
    for n in [256, 300] {
        let errs = errors(&with_zones(n));
        assert!(
            errs.iter()
                .any(|e| e.path == "zones" && e.reason.contains("at most 255 zones")),
            "{n} zones: {errs:?}"
        );
    }
}

#[test]
fn a_country_listed_twice_in_one_zone_is_a_duplicate() {
    let mut spec = with_zones(0);
    spec.zones
        .insert("eu".into(), zone(false, &["DE", "FR", "DE"]));
    spec.regions.insert("eu-1".into(), region(Some("eu"), 2));
    home(&mut spec, &["DE", "FR"], "eu-1");
    let errs = errors(&spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "zones.eu.countries[2]");
    assert!(
        errs[0].reason.contains("DE is listed twice"),
        "{}",
        errs[0].reason
    );
}

#[test]
fn a_country_in_two_zones_names_the_first_zone() {
    let mut spec = with_zones(0);
    spec.zones.insert("cn".into(), zone(true, &["CN"]));
    spec.zones.insert("eu".into(), zone(false, &["DE", "CN"]));
    spec.regions.insert("cn-1".into(), region(Some("cn"), 2));
    spec.regions.insert("eu-1".into(), region(Some("eu"), 3));
    home(&mut spec, &["CN"], "cn-1");
    home(&mut spec, &["DE"], "eu-1");
    let errs = errors(&spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "zones.eu.countries[1]");
    let want = "CN is already confined to zone cn; a country belongs to at most one zone";
    assert_eq!(errs[0].reason, want);
}

#[test]
fn compiled_zones_confine_their_countries_to_their_regions() {
    let mut spec = with_zones(0);
    spec.zones.insert("cn".into(), zone(true, &["CN", "HK"]));
    spec.zones.insert("eu".into(), zone(false, &["DE"]));
    spec.regions.insert("cn-1".into(), region(Some("cn"), 2));
    spec.regions.insert("eu-1".into(), region(Some("eu"), 3));
    spec.regions.insert("eu-2".into(), region(Some("eu"), 4));
    home(&mut spec, &["CN", "HK"], "cn-1");
    home(&mut spec, &["DE"], "eu-2");
    let t = compile(&spec).unwrap();
    let names = |set: edgesteer_config::model::RegionSet| -> Vec<String> {
        set.iter().map(|r| t.region(r).name.clone()).collect()
    };
    let cn = t.zone_by_name("cn").unwrap();
    let eu = t.zone_by_name("eu").unwrap();
    assert!(t.zone(cn).isolated && !t.zone(eu).isolated);
    assert_eq!(names(t.zone(cn).regions), ["cn-1"]);
    assert_eq!(names(t.zone(eu).regions), ["eu-1", "eu-2"]);
    let country = |c: &str| Country::parse(c).unwrap();
    assert_eq!(t.zone(cn).countries, [country("CN"), country("HK")]);
    for (c, z) in [
        ("CN", Some(cn)),
        ("HK", Some(cn)),
        ("DE", Some(eu)),
        ("US", None),
    ] {
        assert_eq!(t.confining_zone(country(c)), z, "{c}");
    }
    // Clients of no zone may use every region but the isolated zone's.
    assert_eq!(
        names(t.classify(Some(country("US")), None).allowed),
        ["a", "eu-1", "eu-2"]
    );
    assert_eq!(
        names(t.classify(Some(country("DE")), None).allowed),
        ["eu-1", "eu-2"]
    );
    assert_eq!(
        names(t.classify(Some(country("HK")), None).allowed),
        ["cn-1"]
    );
}
