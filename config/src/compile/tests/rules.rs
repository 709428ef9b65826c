//! Tests of `compile`'s field rules beyond geography: backends, health,
//! retry, release, client IP, outliers, host pins and names, limits, and
//! parse errors that name their field.

use super::{assert_one_error, covergen, errors, region};
use crate::compile::backends::MAX_WEIGHT;
use crate::compile::compile;
use crate::parse;
use crate::wire::{BackendSpec, HealthSpec};
use crate::{ConfigError, COVERGEN_TOML};

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
fn region_capacity_is_a_rate_above_zero() {
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let mut s = covergen();
        region(&mut s, "us-east").capacity = Some(bad);
        assert_one_error(&s, "regions.us-east.capacity", "not a rate above 0");
    }
    let mut s = covergen();
    region(&mut s, "us-east").capacity = Some(1500.0);
    let t = compile(&s).unwrap();
    let east = t.region_by_name("us-east").unwrap();
    assert_eq!(t.region(east).capacity, Some(1500.0));
    // From TOML, as the table docs write it.
    let text = COVERGEN_TOML.replace("[regions.us-east]\n", "[regions.us-east]\ncapacity = 0\n");
    assert_ne!(text, COVERGEN_TOML, "covergen has no [regions.us-east]");
    assert_one_error(
        &parse::from_toml(&text).unwrap(),
        "regions.us-east.capacity",
        "not a rate above 0",
    );
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
    // Its [dns] edges are keyed by the old name; that rule has its own test.
    s.dns = None;
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

/// A stream's h2 window is HTTP/2's own unless set; at least a frame (16
/// KiB), at most 2 MiB, so the connection's (times up to 1,000 streams)
/// stays a valid window.
#[test]
fn the_h2_window_is_bounded_and_a_region_may_set_its_own() {
    let mut spec = covergen();
    let t = compile(&spec).unwrap();
    assert_eq!(t.regions[0].upstream.h2_window_bytes, 65_535);
    spec.upstream.h2_window_bytes = Some(16_383);
    assert_one_error(
        &spec,
        "upstream.h2_window_bytes",
        "16383 is outside 16384..=2097152",
    );
    spec.upstream.h2_window_bytes = None;
    region(&mut spec, "us-east").upstream = Some(crate::wire::UpstreamSpec {
        h2_window_bytes: Some(2 * 1024 * 1024 + 1),
        ..Default::default()
    });
    assert_one_error(&spec, "regions.us-east.upstream.h2_window_bytes", "outside");
    region(&mut spec, "us-east").upstream = Some(crate::wire::UpstreamSpec {
        h2_window_bytes: Some(1 << 20),
        ..Default::default()
    });
    let t = compile(&spec).unwrap();
    for r in &t.regions {
        let want = if r.name == "us-east" { 1 << 20 } else { 65_535 };
        assert_eq!(r.upstream.h2_window_bytes, want, "{}", r.name);
    }
}

/// A region may turn TLS off under a table that sets TLS options: it
/// takes none of them (it could not unset them, and was refused naming a
/// field it never set); its own TLS options are still its error.
#[test]
fn a_region_turns_tls_off_without_the_tables_tls_options() {
    let mut spec = covergen();
    spec.upstream.tls = Some(true);
    spec.upstream.sni = Some("origin.covergen.ai".into());
    spec.upstream.alpn = Some(vec!["h2".into()]);
    region(&mut spec, "us-east").upstream = Some(crate::wire::UpstreamSpec {
        tls: Some(false),
        ..Default::default()
    });
    let t = compile(&spec).unwrap();
    let us = t.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert!(!us.upstream.tls);
    assert!(t.regions.iter().any(|r| r.upstream.tls), "others keep TLS");
    region(&mut spec, "us-east").upstream = Some(crate::wire::UpstreamSpec {
        tls: Some(false),
        sni: Some("x.covergen.ai".into()),
        ..Default::default()
    });
    assert_one_error(
        &spec,
        "regions.us-east.upstream.sni",
        "only means something",
    );
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
