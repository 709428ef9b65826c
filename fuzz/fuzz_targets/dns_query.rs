//! The GeoDNS answer path (issue 27): any bytes, over UDP and over TCP,
//! against the covergen table.
//!
//! Input: one datagram (or TCP message). Never a panic; an answer, when
//! there is one, is a response to the same ID, parses as DNS with
//! hickory-proto (an independent implementation), fits 1232 bytes over
//! UDP, and every address it carries is an edge of exactly one region.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use edgesteer_config::dns::{DnsZone, RecordData};
use edgesteer_config::model::RegionSet;
use edgesteer_config::route::AllHealthy;
use edgesteer_config::{load_toml, RoutingTable, COVERGEN_TOML};
use edgesteer_dns::render::Rendered;
use edgesteer_dns::respond::{respond, Env, Transport};
use edgesteer_geo::GeoDb;
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    table: RoutingTable,
    zone: Rendered,
    geo: GeoDb,
    /// Each edge address's region.
    owner: HashMap<IpAddr, usize>,
    /// The zone's static A/AAAA records (the nameservers' glue): never an
    /// edge (compile refuses that), answered as written.
    fixed: std::collections::HashSet<IpAddr>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (_, table) = load_toml(COVERGEN_TOML).expect("covergen compiles");
        let z: Arc<DnsZone> = table.dns.clone().expect("covergen has [dns]");
        let mut owner = HashMap::new();
        for (i, r) in z.regions.iter().enumerate() {
            for a in &r.v4 {
                owner.insert(IpAddr::V4(*a), i);
            }
            for a in &r.v6 {
                owner.insert(IpAddr::V6(*a), i);
            }
        }
        let fixed = z
            .records
            .iter()
            .filter_map(|r| match r.data {
                RecordData::A(a) => Some(IpAddr::V4(a)),
                RecordData::Aaaa(a) => Some(IpAddr::V6(a)),
                _ => None,
            })
            .collect();
        Fixture {
            fixed,
            zone: Rendered::new(z, 1),
            table,
            geo: GeoDb::bundled().expect("bundled geo database"),
            owner,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let env = Env {
        table: &f.table,
        health: &AllHealthy,
        geo: &f.geo,
        zone: Some(&f.zone),
        edges_down: RegionSet::EMPTY,
        classes: None,
    };
    let mut out = Vec::new();
    for t in [Transport::Udp, Transport::Tcp] {
        let Some(outcome) = respond(&env, data, "198.51.100.1".parse().unwrap(), t, &mut out) else {
            continue;
        };
        assert!(out.len() >= 12);
        assert_eq!(out[..2], data[..2], "the answer carries the query's ID");
        assert!(out[2] & 0x80 != 0, "QR set");
        if t == Transport::Udp {
            assert!(out.len() <= 1232, "{} bytes over UDP", out.len());
        }
        let m = Message::from_vec(&out).unwrap_or_else(|e| panic!("our answer does not parse ({outcome:?}): {e}"));
        // Every address answered is an edge or one of the zone's own
        // records; the edges of one answer are one region's.
        let mut regions = m.answers.iter().filter_map(|r| {
            let ip = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => return None,
            };
            match f.owner.get(&ip) {
                Some(&region) => Some(region),
                None => {
                    assert!(f.fixed.contains(&ip), "{ip} answered, neither an edge nor a record of the zone");
                    None
                }
            }
        });
        if let Some(first) = regions.next() {
            assert!(regions.all(|r| r == first), "one answer, one region");
        }
    }
});
