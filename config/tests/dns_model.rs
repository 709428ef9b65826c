#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The model check of the two planes: for every client class of the
//! covergen table (every country code, and no country) x every host (the
//! geo name and each pin) x every subset of healthy regions (all 2^8) x
//! each drain state (none, or any one region drained), with "unhealthy"
//! meaning all backends down in one pass and one backend left (below the
//! half rule for 3-backend regions, at it for 2-backend ones) in another:
//! the DNS answer's region is HTTP `decide()`'s region, or both fail
//! closed inside the client's zone; and neither ever leaves the zone,
//! judged by an oracle read from the table as written.

mod zone_oracle;
use zone_oracle::oracle_allowed;

use std::collections::HashMap;
use std::net::IpAddr;

use edgesteer_config::dns::answer::{answer, AnswerState, DnsDecision};
use edgesteer_config::model::{BackendId, RegionId, RegionSet};
use edgesteer_config::route::{decide, Decision, HealthView, Request};
use edgesteer_config::{load_toml, ClientClass, Country, COVERGEN_TOML};

/// Backends of `up` regions healthy; of the others, none, or only the
/// first (`one_left`).
struct Health<'a> {
    up: u32,
    one_left: bool,
    first_of_region: &'a [bool],
    region_of: &'a [RegionId],
}

impl HealthView for Health<'_> {
    fn is_healthy(&self, b: BackendId) -> bool {
        let r = self.region_of[b.index()];
        self.up & (1 << r.0) != 0 || (self.one_left && self.first_of_region[b.index()])
    }
    fn region_rtt_us(&self, r: RegionId) -> Option<u32> {
        Some(1000 + u32::from(r.0) * 10)
    }
}

#[test]
fn dns_and_http_agree_and_never_cross_a_zone() {
    let (spec, table) = load_toml(COVERGEN_TOML).unwrap();
    let zone = table.dns.clone().expect("covergen has a [dns] section");
    let dns_spec = spec.dns.clone().unwrap();
    // Every answer address, to the one region that owns it (as written).
    let mut owner: HashMap<IpAddr, &str> = HashMap::new();
    for (name, r) in &dns_spec.regions {
        for a in &r.addresses {
            assert!(
                owner.insert(a.parse().unwrap(), name).is_none(),
                "{a} listed twice"
            );
        }
    }
    // One representative country per distinct class, with its code.
    let mut classes: Vec<(ClientClass, Option<String>)> = vec![(table.classify(None, None), None)];
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            let code = String::from_utf8(vec![a, b]).unwrap();
            let class = table.classify(Country::parse(&code), None);
            if !classes.iter().any(|(c, _)| *c == class) {
                classes.push((class, Some(code)));
            }
        }
    }
    assert!(classes.len() >= 5, "{classes:?}");
    let pins: Vec<Option<RegionId>> = std::iter::once(None)
        .chain(table.pins().map(|(_, r)| Some(r)))
        .collect();
    assert_eq!(pins.len(), 5);
    let region_of: Vec<RegionId> = table.backends.iter().map(|b| b.region).collect();
    let first_of_region: Vec<bool> = table
        .backends
        .iter()
        .map(|b| table.region(b.region).backends.first() == Some(&b.id))
        .collect();
    let n = table.regions.len();
    let (mut agreed, mut closed) = (0u32, 0u32);
    for drained in std::iter::once(None).chain((0..n).map(Some)) {
        let mut t = table.clone();
        if let Some(d) = drained {
            t.regions[d].drained = true;
        }
        for up in 0..(1u32 << n) {
            for one_left in [false, true] {
                let health = Health {
                    up,
                    one_left,
                    first_of_region: &first_of_region,
                    region_of: &region_of,
                };
                for (class, code) in &classes {
                    let allowed = oracle_allowed(&spec, code.as_deref());
                    for &pin in &pins {
                        let req = Request {
                            class: *class,
                            pin,
                            sticky: 0x5eed,
                            tried: &[],
                        };
                        let http = decide(&t, &req, &health);
                        let dns = answer(&t, &zone, *class, pin, &health, RegionSet::EMPTY);
                        let ctx = || {
                            format!("country {code:?} pin {pin:?} up {up:08b} one_left {one_left} drained {drained:?}: http {http:?} dns {dns:?}")
                        };
                        match (http, dns) {
                            (Decision::Route(r), DnsDecision::Answer(a)) => {
                                assert_eq!(r.region, a.region, "{}", ctx());
                                assert_ne!(a.state, AnswerState::FailOpen, "{}", ctx());
                                agreed += 1;
                            }
                            (Decision::NoHealthyBackend { zone: z }, DnsDecision::Answer(a)) => {
                                assert_eq!(a.state, AnswerState::FailOpen, "{}", ctx());
                                assert_eq!(z, class.zone, "{}", ctx());
                                closed += 1;
                            }
                            (
                                Decision::PinOutsideZone { .. },
                                DnsDecision::PinOutsideZone { .. },
                            ) => {}
                            _ => panic!("the planes disagree: {}", ctx()),
                        }
                        if let DnsDecision::Answer(a) = dns {
                            let name = &t.region(a.region).name;
                            assert!(allowed[name], "DNS crossed a zone: {}", ctx());
                            let edges = &zone.regions[a.region.index()];
                            for ip in edges
                                .v4
                                .iter()
                                .map(|&v| IpAddr::V4(v))
                                .chain(edges.v6.iter().map(|&v| IpAddr::V6(v)))
                            {
                                assert_eq!(
                                    owner[&ip],
                                    name.as_str(),
                                    "{ip} answered for {name}: {}",
                                    ctx()
                                );
                            }
                        }
                        if let Decision::Route(r) = http {
                            assert!(
                                allowed[&t.region(r.region).name],
                                "HTTP crossed a zone: {}",
                                ctx()
                            );
                        }
                    }
                }
            }
        }
    }
    // Both outcomes were reached, many times.
    assert!(
        agreed > 100_000 && closed > 1_000,
        "agreed {agreed}, closed {closed}"
    );
}
