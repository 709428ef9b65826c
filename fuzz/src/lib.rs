//! Shared pieces of the fuzz targets (see `fuzz_targets/`):
//!
//! - [`gen_table`]: a routing table generated as wire structs from the
//!   fuzzer's bytes. Names come mostly from small pools, so references
//!   (failover, zones, geo, pins, tiers) resolve often enough for inputs
//!   to get past the name checks and into the zone and index rules.
//! - [`check_errors`] and [`check_table`]: what `compile()` promises. A
//!   refused table names a field on every error; an accepted one only
//!   holds in-range region, zone, backend and tier references, and never
//!   routes a client outside its allowed regions.
//! - [`headers`]: a `HeaderMap` from fuzzer bytes, as a proxy would see it.

use arbitrary::{Result, Unstructured};
use edgesteer_config::geo_codes::{Continent, Country};
use edgesteer_config::model::{ClientClass, RegionSet};
use edgesteer_config::route::{decide, AllHealthy, Decision, Request};
use edgesteer_config::wire::{
    AbuseSpec, BackendSpec, ClientIpSpec, GeoSpec, HealthSpec, RateLimitSpec, RegionSpec,
    ReleaseSpec, RetrySpec, RolloutSpec, RolloutStep, TableSpec, TierSpec, UpstreamSpec, ZoneSpec,
};
use edgesteer_config::{ConfigError, RoutingTable};
use http::{HeaderMap, HeaderName, HeaderValue};

const REGIONS: &[&str] = &["us-east", "eu-west", "cn-east", "ap", "b", "Bad Name", ""];
const ZONES: &[&str] = &["eu", "cn", "z", ""];
const COUNTRIES: &[&str] = &["US", "DE", "FR", "CN", "HK", "GB", "ZZ", "de", "X", "AQ"];
const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA", "XX", "eu"];
const HOSTS: &[&str] = &[
    "api.x.ai", "API.x.ai", "cn.x.ai", "x", "-bad-", "a..b", "[::1]",
];
const ADDRS: &[&str] = &[
    "127.0.0.1:8080",
    "10.0.0.1:80",
    "[::1]:443",
    "backend.internal:9000",
    "127.0.0.1",
    "127.0.0.1:0",
    "host:99999",
    ":80",
    "[::1]",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "127.0.0.1",
    "::1",
    "0.0.0.0/0",
    "::/0",
    "fd00::/8",
    "::ffff:10.0.0.0/104",
    "10.0.0.1/33",
    "bad",
];
const STICKY: &[&str] = &[
    "header:x-user",
    "cookie:sid",
    "cookie:",
    "header:",
    "ip",
    "header:X-Up",
];
const KEYS: &[&str] = &[
    "client_ip",
    "header:x-api-key",
    "header:",
    "header:X-Key",
    "cookie:a",
];
const TIERS: &[&str] = &["free", "pro", "default", ""];
const TRACKS: &[&str] = &["stable", "canary", "beta"];
const STATES: &[&str] = &[
    "idle",
    "running",
    "paused",
    "completed",
    "rolled_back",
    "aborted",
    "x",
];

/// One of `pool` most of the time, else any string.
fn pick(u: &mut Unstructured, pool: &[&str]) -> Result<String> {
    if u.ratio(15, 16)? {
        Ok((*u.choose(pool)?).to_string())
    } else {
        u.arbitrary()
    }
}

fn some<T>(
    u: &mut Unstructured,
    f: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    if u.arbitrary()? {
        Ok(Some(f(u)?))
    } else {
        Ok(None)
    }
}

fn list<T>(
    u: &mut Unstructured,
    max: usize,
    mut f: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| f(u)).collect()
}

/// A `u32` that is usually small or at a boundary.
fn num(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.int_in_range(0..=10)?,
        1 => u.int_in_range(0..=10_000)?,
        2 => *u.choose(&[u32::MAX, 10_000_000, 10_000_001, 10_001, 255, 256])?,
        _ => u.arbitrary()?,
    })
}

fn num64(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=2)? {
        0 => u.int_in_range(0..=100_000)?,
        1 => *u.choose(&[u64::MAX, u64::MAX / 1000, 1 << 53])?,
        _ => u.arbitrary()?,
    })
}

fn health(u: &mut Unstructured) -> Result<HealthSpec> {
    Ok(HealthSpec {
        kind: some(u, |u| pick(u, &["http", "tcp", "udp"]))?,
        path: some(u, |u| pick(u, &["/health", "health", "/"]))?,
        interval_ms: some(u, num64)?,
        timeout_ms: some(u, num64)?,
        expect_status: some(u, |u| u.arbitrary())?,
        expect_body: some(u, |u| u.arbitrary())?,
        unhealthy_after: some(u, num)?,
        healthy_after: some(u, num)?,
        dns_forget_after_ms: some(u, num64)?,
    })
}

fn rollout(u: &mut Unstructured) -> Result<RolloutSpec> {
    let f = |u: &mut Unstructured| -> Result<f64> {
        Ok(*u.choose(&[0.0, 0.01, 1.0, 1.5, -1.0, 2.0, f64::NAN, f64::INFINITY])?)
    };
    Ok(RolloutSpec {
        state: pick(u, STATES)?,
        step: u.int_in_range(0..=5)?,
        steps: list(u, 4, |u| {
            Ok(RolloutStep {
                canary_bps: num(u)?,
                hold_ms: num64(u)?,
            })
        })?,
        max_error_rate: some(u, f)?,
        max_p99_ratio: some(u, f)?,
        min_requests: some(u, num64)?,
        step_started_ms: num64(u)?,
        reason: some(u, |u| u.arbitrary())?,
    })
}

fn upstream(u: &mut Unstructured) -> Result<UpstreamSpec> {
    Ok(UpstreamSpec {
        tls: some(u, |u| u.arbitrary())?,
        sni: some(u, |u| pick(u, &["origin.example", "127.0.0.1", "bad name", ""]))?,
        verify: some(u, |u| u.arbitrary())?,
        insecure_skip_verify: some(u, |u| u.arbitrary())?,
        ca: some(u, |u| pick(u, &["/nonexistent/ca.pem", "/dev/null"]))?,
        client_cert: some(u, |u| pick(u, &["/nonexistent/c.pem"]))?,
        client_key: some(u, |u| pick(u, &["/nonexistent/k.pem"]))?,
        alpn: some(u, |u| {
            list(u, 3, |u| pick(u, &["h2", "http/1.1", "h2c", "spdy"]))
        })?,
        max_h2_streams: some(u, num)?,
        h2_window_bytes: some(u, num)?,
    })
}

fn region(u: &mut Unstructured) -> Result<RegionSpec> {
    Ok(RegionSpec {
        zone: some(u, |u| pick(u, ZONES))?,
        failover: list(u, 3, |u| pick(u, REGIONS))?,
        canary_bps: num(u)?,
        drain: u.ratio(1, 8)?,
        capacity: None,
        health: some(u, health)?,
        upstream: some(u, upstream)?,
        rollout: if u.ratio(1, 4)? {
            Some(rollout(u)?)
        } else {
            None
        },
        backends: list(u, 4, |u| {
            Ok(BackendSpec {
                address: pick(u, ADDRS)?,
                weight: num(u)?,
                track: some(u, |u| pick(u, TRACKS))?,
            })
        })?,
    })
}

fn rate_limit(u: &mut Unstructured) -> Result<RateLimitSpec> {
    let tiered = u.arbitrary()?;
    let mut p = RateLimitSpec {
        name: pick(u, &["api", "ip", "", "Bad Name"])?,
        key: pick(u, KEYS)?,
        scope: some(u, |u| pick(u, &["local", "global", "fleet"]))?,
        on_store_error: some(u, |u| pick(u, &["fail_open", "fail_closed", "x"]))?,
        hosts: list(u, 2, |u| pick(u, HOSTS))?,
        path_prefixes: list(u, 2, |u| pick(u, &["/v1/", "/", "v1", "/%76"]))?,
        response_headers: u.arbitrary()?,
        max_keys: some(u, num)?,
        abuse: some(u, |u| {
            Ok(AbuseSpec {
                multiple: num(u)?,
                for_s: num(u)?,
                block_s: some(u, num)?,
            })
        })?,
        ..RateLimitSpec::default()
    };
    if tiered {
        for _ in 0..u.int_in_range(0..=3)? {
            let tier = TierSpec {
                rate: num(u)?,
                burst: some(u, num)?,
            };
            p.tiers.insert(pick(u, TIERS)?, tier);
        }
        p.default_tier = some(u, |u| pick(u, TIERS))?;
        for _ in 0..u.int_in_range(0..=3)? {
            let key = match u.int_in_range(0..=3)? {
                0 => edgesteer_config::ratelimit::hashed_key(&u.arbitrary::<String>()?),
                1 => format!("sha256:{}", u.arbitrary::<String>()?),
                _ => u.arbitrary()?,
            };
            p.keys.insert(key, pick(u, TIERS)?);
        }
    } else {
        p.rate = some(u, num)?;
        p.burst = some(u, num)?;
    }
    Ok(p)
}

/// A routing table as wire structs, names mostly from small pools.
pub fn gen_table(u: &mut Unstructured) -> Result<TableSpec> {
    let mut t = TableSpec {
        description: some(u, |u| u.arbitrary())?,
        default_region: pick(u, REGIONS)?,
        client_ip: ClientIpSpec {
            trusted_proxies: list(u, 3, |u| pick(u, CIDRS))?,
        },
        release: ReleaseSpec {
            salt: some(u, |u| u.arbitrary())?,
            sticky_keys: list(u, 3, |u| pick(u, STICKY))?,
        },
        retry: RetrySpec {
            max_attempts: some(u, num)?,
            connect_timeout_ms: some(u, num64)?,
            per_try_timeout_ms: some(u, num64)?,
            total_timeout_ms: some(u, num64)?,
        },
        health: health(u)?,
        geo: GeoSpec::default(),
        ..TableSpec::default()
    };
    t.headers.track = u.arbitrary()?;
    t.headers.version = u.arbitrary()?;
    t.logging.access_log = u.arbitrary()?;
    t.outlier.consecutive_failures = some(u, num)?;
    t.outlier.consecutive_5xx = some(u, num)?;
    t.outlier.base_ejection_ms = some(u, num64)?;
    t.outlier.max_ejection_ms = some(u, num64)?;
    t.outlier.max_ejection_percent = some(u, num)?;
    for _ in 0..u.int_in_range(0..=3)? {
        let z = ZoneSpec {
            isolated: u.arbitrary()?,
            countries: list(u, 3, |u| pick(u, COUNTRIES))?,
        };
        t.zones.insert(pick(u, ZONES)?, z);
    }
    for _ in 0..u.int_in_range(1..=5)? {
        let r = region(u)?;
        t.regions.insert(pick(u, REGIONS)?, r);
    }
    for _ in 0..u.int_in_range(0..=3)? {
        t.geo
            .continents
            .insert(pick(u, CONTINENTS)?, pick(u, REGIONS)?);
    }
    for _ in 0..u.int_in_range(0..=4)? {
        t.geo
            .countries
            .insert(pick(u, COUNTRIES)?, pick(u, REGIONS)?);
    }
    for _ in 0..u.int_in_range(0..=2)? {
        t.hosts.insert(pick(u, HOSTS)?, pick(u, REGIONS)?);
    }
    t.rate_limits = list(u, 2, rate_limit)?;
    Ok(t)
}

/// A refused table names the field at fault, and says why, every time.
pub fn check_errors(e: &ConfigError) {
    assert!(!e.errors().is_empty(), "an error without any field: {e:?}");
    for f in e.errors() {
        assert!(!f.path.is_empty(), "error without a field path: {f:?}");
        assert!(!f.reason.is_empty(), "error without a reason: {f:?}");
    }
}

/// Every index an accepted table holds is in range, and `decide` never
/// leaves a client's allowed set.
pub fn check_table(t: &RoutingTable) {
    let (nr, nz, nb) = (t.regions.len(), t.zones.len(), t.backends.len());
    assert!(nr > 0, "a table without regions compiled");
    assert!(t.default_region.index() < nr);
    let all = all_regions(nr);
    for (i, r) in t.regions.iter().enumerate() {
        assert_eq!(r.id.index(), i, "region {} has id {:?}", r.name, r.id);
        if let Some(z) = r.zone {
            assert!(usize::from(z.0) < nz, "region {} in zone {z:?}", r.name);
            assert!(
                t.zone(z).regions.contains(r.id),
                "zone does not list {}",
                r.name
            );
        }
        for f in &r.failover {
            assert!(f.index() < nr, "region {} fails over to {f:?}", r.name);
            assert_ne!(*f, r.id, "region {} fails over to itself", r.name);
            // A failover never leaves a zone, nor enters an isolated one.
            let to = t.region(*f).zone;
            match r.zone {
                Some(_) => assert_eq!(to, r.zone, "{} fails over out of its zone", r.name),
                None => assert!(
                    to.is_none_or(|z| !t.zone(z).isolated),
                    "{} fails over into an isolated zone",
                    r.name
                ),
            }
        }
        for b in &r.backends {
            assert!(b.index() < nb);
            assert_eq!(t.backend(*b).region, r.id);
        }
        for track in &r.tracks {
            for b in track.walk(0).chain(track.walk(u64::MAX)) {
                assert!(b.index() < nb);
                assert_eq!(t.backend(b).region, r.id);
            }
        }
    }
    for (i, b) in t.backends.iter().enumerate() {
        assert_eq!(b.id.index(), i);
        assert!(b.region.index() < nr);
    }
    for (i, z) in t.zones.iter().enumerate() {
        assert_eq!(usize::from(z.id.0), i);
        assert_eq!(
            z.regions.0 & !all.0,
            0,
            "zone {} holds unknown regions",
            z.name
        );
    }
    for (_, r) in t.pins() {
        assert!(r.index() < nr);
    }
    for p in &t.rate_limits {
        assert!(
            p.default_tier < p.tiers.len(),
            "policy {} default tier",
            p.name
        );
        assert!(p
            .keys
            .values()
            .chain(p.hashed_keys.values())
            .all(|&i| i < p.tiers.len()));
    }
    let mut classes = vec![t.classify(None, None)];
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            let Some(c) = Country::from_bytes(&[a, b]) else {
                continue;
            };
            classes.push(t.classify(Some(c), None));
            classes.push(t.classify(Some(c), Some(Continent::ALL[usize::from(a) % 7])));
        }
    }
    // Most countries share a class; check each distinct one once.
    let mut distinct: Vec<ClientClass> = Vec::new();
    for c in classes {
        if !distinct.contains(&c) {
            distinct.push(c);
        }
    }
    for class in distinct {
        check_class(t, &class, all);
    }
}

fn all_regions(n: usize) -> RegionSet {
    let mut s = RegionSet::EMPTY;
    for i in 0..n {
        s.insert(edgesteer_config::RegionId(i as u8));
    }
    s
}

fn check_class(t: &RoutingTable, class: &ClientClass, all: RegionSet) {
    assert!(class.home.index() < t.regions.len());
    assert_eq!(class.allowed.0 & !all.0, 0);
    if let Some(z) = class.zone {
        assert!(usize::from(z.0) < t.zones.len());
    }
    let pins = std::iter::once(None).chain(t.pins().map(|(_, r)| Some(r)));
    for pin in pins {
        for sticky in [0, 1 << 40, u64::MAX] {
            let req = Request {
                class: *class,
                pin,
                sticky,
                tried: &[],
            };
            match decide(t, &req, &AllHealthy) {
                Decision::Route(r) => {
                    assert!(
                        class.allowed.contains(r.region),
                        "routed out of the allowed set"
                    );
                    assert!(r.backend.index() < t.backends.len());
                    assert_eq!(t.backend(r.backend).region, r.region);
                }
                Decision::PinOutsideZone { pinned, zone } => {
                    assert!(pinned.index() < t.regions.len());
                    assert!(!class.allowed.contains(pinned));
                    assert!(zone.is_none_or(|z| usize::from(z.0) < t.zones.len()));
                }
                Decision::NoHealthyBackend { zone } => {
                    assert!(zone.is_none_or(|z| usize::from(z.0) < t.zones.len()));
                }
            }
        }
    }
}

/// Header lines from fuzzer bytes: `(name, value)` pairs; values a real
/// HTTP parser would refuse (control bytes) are dropped, obs-text kept.
pub fn headers<'a>(lines: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in lines {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        h.append(n, v);
    }
    h
}

/// Compiles a TOML table the targets build on (panics: it is a fixture).
pub fn fixture(toml: &str) -> RoutingTable {
    let spec = edgesteer_config::parse::from_toml(toml).expect("fixture parses");
    edgesteer_config::compile(&spec).expect("fixture compiles")
}
