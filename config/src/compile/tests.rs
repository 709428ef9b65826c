use super::backends::MAX_WEIGHT;
use super::*;
use crate::error::FieldError;
use crate::geo_codes::{Continent, Country};
use crate::parse;
use crate::wire::HealthSpec;
use crate::wire::{BackendSpec, RegionSpec};
use crate::COVERGEN_TOML;

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

#[test]
fn backend_rules() {
    let mut s = covergen();
    region(&mut s, "us-west").backends.clear();
    assert_one_error(&s, "regions.us-west.backends", "at least one backend");

    let mut s = covergen();
    region(&mut s, "us-west").backends[0].address = "not an address".into();
    assert_one_error(&s, "regions.us-west.backends[0].address", "not `ip:port`");

    let mut s = covergen();
    region(&mut s, "us-west").backends[0].address = "10.0.0.1:0".into();
    assert_one_error(&s, "regions.us-west.backends[0].address", "port 0");

    let mut s = covergen();
    let b = region(&mut s, "us-west").backends[0].clone();
    region(&mut s, "us-west").backends.push(b);
    assert_one_error(&s, "regions.us-west.backends[2].address", "listed twice");

    let mut s = covergen();
    region(&mut s, "us-west").backends[1].weight = MAX_WEIGHT + 1;
    assert_one_error(&s, "regions.us-west.backends[1].weight", "over the maximum");

    let mut s = covergen();
    region(&mut s, "us-west").backends[1].track = Some("beta".into());
    assert_one_error(&s, "regions.us-west.backends[1].track", "not a track");

    let mut s = covergen();
    region(&mut s, "us-west").canary_bps = 10_001;
    assert_one_error(&s, "regions.us-west.canary_bps", "over 10000");
}

#[test]
fn backend_address_forms() {
    let mut s = covergen();
    region(&mut s, "us-west").backends = vec![
        BackendSpec {
            address: "127.0.0.1:9000".into(),
            weight: 1,
            track: None,
        },
        BackendSpec {
            address: "[::1]:9000".into(),
            weight: 2,
            track: Some("canary".into()),
        },
        BackendSpec {
            address: "Origin.Example:80".into(),
            weight: 0,
            track: None,
        },
    ];
    let t = compile(&s).unwrap();
    let r = t.region(t.region_by_name("us-west").unwrap());
    let addrs: Vec<String> = r
        .backends
        .iter()
        .map(|&b| t.backend(b).addr.to_string())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:9000", "[::1]:9000", "origin.example:80"]);
    // Weight-0 backends are drained: not in any weighted set.
    assert_eq!(r.tracks[0].len(), 1);
    assert_eq!(r.tracks[1].total_weight(), 2);
}

#[test]
fn health_retry_release_and_client_ip_rules() {
    let mut s = covergen();
    s.health.interval_ms = Some(10);
    assert_one_error(&s, "health.interval_ms", "outside 100..=3600000");

    let mut s = covergen();
    s.health.timeout_ms = Some(5000);
    assert_one_error(&s, "health.timeout_ms", "longer than the interval");

    let mut s = covergen();
    s.health.path = Some("health".into());
    assert_one_error(&s, "health.path", "must start with '/'");

    let mut s = covergen();
    s.health.expect_status = Some(700);
    assert_one_error(&s, "health.expect_status", "not an HTTP status");

    let mut s = covergen();
    s.health.kind = Some("icmp".into());
    assert_one_error(&s, "health.kind", "not a probe kind");

    let mut s = covergen();
    region(&mut s, "eu-west").health = Some(HealthSpec {
        unhealthy_after: Some(0),
        ..Default::default()
    });
    assert_one_error(
        &s,
        "regions.eu-west.health.unhealthy_after",
        "outside 1..=100",
    );

    let mut s = covergen();
    s.retry.max_attempts = Some(0);
    assert_one_error(&s, "retry.max_attempts", "outside 1..=10");

    let mut s = covergen();
    s.retry.per_try_timeout_ms = Some(0);
    assert_one_error(&s, "retry.per_try_timeout_ms", "outside");

    let mut s = covergen();
    s.release.sticky_keys = vec!["query:user".into()];
    assert_one_error(&s, "release.sticky_keys[0]", "not `header:<name>`");

    let mut s = covergen();
    s.client_ip.trusted_proxies = vec!["10.0.0.0/8".into(), "10.0.0.0/99".into()];
    assert_one_error(
        &s,
        "client_ip.trusted_proxies[1]",
        "not an IP address or CIDR",
    );
}

#[test]
fn outlier_rules() {
    let mut s = covergen();
    s.outlier.max_ejection_percent = Some(101);
    assert_one_error(&s, "outlier.max_ejection_percent", "over 100");
    let mut s = covergen();
    s.outlier.base_ejection_ms = Some(60_000);
    s.outlier.max_ejection_ms = Some(1_000);
    assert_one_error(&s, "outlier.max_ejection_ms", "shorter than base");
    let mut s = covergen();
    s.outlier.consecutive_5xx = Some(5000);
    assert_one_error(&s, "outlier.consecutive_5xx", "outside 0..=1000");
}

#[test]
fn host_pin_rules() {
    let mut s = covergen();
    s.hosts
        .insert("api-xx.covergen.ai".into(), "xx-north".into());
    assert_one_error(
        &s,
        "hosts.\"api-xx.covergen.ai\"",
        "unknown region `xx-north`",
    );
    let mut s = covergen();
    s.hosts.insert("bad host:443".into(), "us-east".into());
    assert_one_error(&s, "hosts.\"bad host:443\"", "not a valid host name");
}

#[test]
fn names_and_empty_tables() {
    let mut s = covergen();
    let r = s.regions.remove("us-west").unwrap();
    s.regions.insert("US West".into(), r);
    region(&mut s, "us-east").failover.clear();
    assert_one_error(&s, "regions.US West", "lower-case letters");

    let mut s = covergen();
    s.regions.clear();
    assert_one_error(&s, "regions", "at least one region");
}

#[test]
fn all_errors_are_reported_together() {
    let mut s = covergen();
    s.default_region = "nowhere".into();
    region(&mut s, "cn-east").failover = vec!["ap-southeast".into()];
    region(&mut s, "us-west").canary_bps = 20_000;
    assert_eq!(errors(&s).len(), 3);
}

#[test]
fn parse_errors_name_the_field() {
    let text = COVERGEN_TOML.replace("[regions.cn-north]\nzone", "[regions.cn-north]\nzonee");
    let err = parse::from_toml(&text).unwrap_err();
    let e = &err.errors()[0];
    assert_eq!(e.path, "regions.cn-north.zonee");
    assert!(e.reason.contains("unknown field `zonee`"), "{e}");
    assert!(e.reason.contains("line"), "{e}");

    let err = parse::from_json(br#"{"default_region":"a","regions":{"a":{"backends":[{"address":"1.2.3.4:80","wieght":1}]}}}"#).unwrap_err();
    let e = &err.errors()[0];
    assert_eq!(e.path, "regions.a.backends[0].wieght");
    assert!(e.reason.contains("unknown field `wieght`"), "{e}");

    let err = parse::from_json(br#"{"default_region":"a","regions":{"a":{"backends":[{"address":"1.2.3.4:80","weight":"x"}]}}}"#).unwrap_err();
    assert_eq!(err.errors()[0].path, "regions.a.backends[0].weight");

    let err = parse::from_json(b"{not json").unwrap_err();
    assert!(matches!(err, ConfigError::Parse(_)));
}

#[test]
fn json_and_toml_are_the_same_model() {
    let spec = covergen();
    let json = serde_json::to_vec(&spec).unwrap();
    assert_eq!(parse::from_json(&json).unwrap(), spec);
    let toml = parse::to_toml(&spec).unwrap();
    assert_eq!(parse::from_toml(&toml).unwrap(), spec);
}

#[test]
fn limits_are_bounded_and_name_their_field() {
    let mut spec = crate::parse::from_toml(crate::COVERGEN_TOML).unwrap();
    spec.limits.keepalive_idle_ms = Some(0);
    spec.limits.max_requests_per_connection = Some(0);
    spec.limits.min_send_rate_bps = Some(100);
    let err = compile(&spec).unwrap_err();
    let paths: Vec<&str> = err.errors().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "limits.keepalive_idle_ms",
            "limits.max_requests_per_connection"
        ]
    );
    spec.limits.keepalive_idle_ms = Some(5000);
    spec.limits.max_requests_per_connection = Some(100);
    let t = compile(&spec).unwrap();
    assert_eq!(t.limits.keepalive_idle, std::time::Duration::from_secs(5));
    assert_eq!(t.limits.max_requests_per_connection, 100);
    assert_eq!(t.limits.min_send_rate, Some(100));
}

#[test]
fn a_pushed_table_may_not_ask_for_too_much() {
    let mut spec = crate::parse::from_toml(crate::COVERGEN_TOML).unwrap();
    spec.client_ip.trusted_proxies =
        vec!["10.0.0.0/8".into(), "0.0.0.0/1".into(), "2001::/16".into()];
    let keyed = spec
        .rate_limits
        .iter_mut()
        .find(|p| p.keys.is_empty() && p.rate.is_some());
    let p = keyed.expect("covergen has a single-limit policy");
    p.max_keys = Some(20_000_000);
    p.burst = Some(2_000_000_000);
    let err = compile(&spec).unwrap_err();
    let paths: Vec<&str> = err.errors().iter().map(|e| e.path.as_str()).collect();
    for want in [
        "client_ip.trusted_proxies[1]",
        "client_ip.trusted_proxies[2]",
        "rate_limits[0].max_keys",
        "rate_limits[0].burst",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(
        !paths.contains(&"client_ip.trusted_proxies[0]"),
        "/8 is allowed"
    );
}

#[test]
fn many_host_pins_are_found_in_any_spelling() {
    let mut spec = crate::parse::from_toml(crate::COVERGEN_TOML).unwrap();
    for i in 0..50 {
        spec.hosts
            .insert(format!("h{i}.example.com"), "eu-west".into());
    }
    let t = compile(&spec).unwrap();
    let eu = t.pin_for_host("h7.example.com").unwrap();
    assert_eq!(t.region(eu).name, "eu-west");
    assert_eq!(t.pin_for_host("H7.Example.COM:443"), Some(eu));
    assert_eq!(t.pin_for_host("h7.example.com."), Some(eu));
    assert_eq!(t.pin_for_host("h77.example.com"), None);
    assert_eq!(t.pins().count(), 54);
}
