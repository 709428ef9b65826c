#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Client-subnet scopes (RFC 7871): the merged networks of one zone and
//! home; a subnet wider than one network gets the longer scope of the one
//! it was answered for; an IPv4-mapped subnet is located as IPv4.

mod common;

use common::{a_for_subnet, fixture};
use edgesteer_geo::testdb::{build, Schema};
use edgesteer_geo::GeoDb;

#[test]
fn scopes_are_the_merged_networks_of_one_zone_and_home() {
    let f = fixture();
    // DE and FR side by side (both zone eu, home eu-west) merge into one
    // /15; CN next to them does not; the DE/FR pair's scope is /15.
    let db = db(&[
        ("100.0.0.0/16", "DE", "EU"),
        ("100.1.0.0/16", "FR", "EU"),
        ("100.2.0.0/16", "GB", "EU"),
        ("100.3.0.0/16", "CN", "AS"),
    ]);
    let map = class_map(&f, &db);
    // FR in the US's class instead: DE and it no longer merge, one
    // entry more (the database's unlisted networks are entries too).
    let split = class_map(
        &f,
        &self::db(&[
            ("100.0.0.0/16", "DE", "EU"),
            ("100.1.0.0/16", "US", "NA"),
            ("100.2.0.0/16", "GB", "EU"),
            ("100.3.0.0/16", "CN", "AS"),
        ]),
    );
    let ((v4, v6), (split_v4, split_v6)) = (map.len(), split.len());
    assert_eq!((split_v4, split_v6), (v4 + 1, v6));
    assert!(v6 > 0 && !map.is_empty());
    assert_eq!(map.version, 42);
    let one_v4 = edgesteer_dns::scope::ClassMap::build(&f.table, 1, |cb| {
        cb(edgesteer_geo::GeoNetwork {
            addr: "100.0.0.0".parse().unwrap(),
            prefix: 16,
            result: edgesteer_geo::GeoResult {
                country: edgesteer_config::Country::parse("DE"),
                continent: None,
                status: edgesteer_geo::LookupStatus::Found,
            },
        });
        Ok(0)
    })
    .unwrap();
    assert_eq!((one_v4.len(), one_v4.is_empty()), ((1, 0), false));
    let empty = edgesteer_dns::scope::ClassMap::build(&f.table, 1, |_| Ok(0)).unwrap();
    assert_eq!((empty.len(), empty.is_empty()), ((0, 0), true));
    let env = f.env(&db, Some(&map));
    let (a, sc) = a_for_subnet(&env, "100.1.5.0", 24);
    assert!(a.contains(&"198.51.100.30".parse().unwrap()), "{a:?}");
    assert_eq!(sc, 15, "DE and FR merged");
    // GB: not in zone eu (home eu-west, no zone): its own class, /16.
    let (a, sc) = a_for_subnet(&env, "100.2.1.0", 24);
    assert!(a.contains(&"198.51.100.30".parse().unwrap()), "{a:?}");
    assert_eq!(sc, 16);
    let (a, sc) = a_for_subnet(&env, "100.3.1.0", 24);
    assert!(a.contains(&"203.0.113.80".parse().unwrap()), "{a:?}");
    assert_eq!(sc, 16);
    // Without the map, the database's own network: /16 for DE too.
    let direct = f.env(&db, None);
    assert_eq!(a_for_subnet(&direct, "100.1.5.0", 24).1, 16);
}

/// A database of `(network, country, continent)`.
fn db(nets: &[(&str, &str, &str)]) -> GeoDb {
    GeoDb::from_bytes(build(Schema::GeoIp2, nets)).unwrap()
}

/// `db`'s networks merged under the covergen table's classes (version 42).
fn class_map(f: &common::Fixture, db: &GeoDb) -> edgesteer_dns::scope::ClassMap {
    edgesteer_dns::scope::ClassMap::build(&f.table, 42, |cb| {
        edgesteer_geo::GeoLookup::networks(db, cb).unwrap()
    })
    .unwrap()
}

/// A /16 whose halves are mainland China and Hong Kong.
fn cn_and_hk() -> GeoDb {
    db(&[("100.3.0.0/17", "CN", "AS"), ("100.3.128.0/17", "HK", "AS")])
}

/// Answers `subnet/source` from `db` (directly: no class map).
fn ask_db(db: &GeoDb, subnet: &str, source: u8) -> (Vec<std::net::Ipv4Addr>, u8) {
    let f = fixture();
    a_for_subnet(&f.env(db, None), subnet, source)
}

/// A /16 whose halves are mainland China and Hong Kong: the answer's
/// scope is the half it was answered for (/17, longer than the source:
/// "send more bits"), never the /16, which a resolver would cache for the
/// other half too. A longer source inside one network gets that
/// network's scope, not the source's.
#[test]
fn a_subnet_across_networks_gets_the_longer_scope_of_its_answer() {
    let db = cn_and_hk();
    let cn = "203.0.113.80".parse().unwrap();
    let ap = "203.0.113.10".parse().unwrap();
    let (a, sc) = ask_db(&db, "100.3.0.0", 16);
    assert!(a.contains(&cn), "{a:?}");
    assert_eq!(sc, 17, "the CN half only");
    let (a, sc) = ask_db(&db, "100.3.200.1", 32);
    assert!(a.contains(&ap) && !a.contains(&cn), "{a:?}");
    assert_eq!(sc, 17, "the HK network, not the /32 sent");
    // Past /24 the bits are used too: a /25 source in the HK half.
    let (a, _) = ask_db(&db, "100.3.128.128", 25);
    assert!(a.contains(&ap), "{a:?}");
}

/// An IPv4-mapped subnet is located as its IPv4 client (as the HTTP plane
/// locates a mapped address), with the scope in IPv6 bits; it was once
/// cut to /56, read as `::` and sent out of its zone.
#[test]
fn an_ipv4_mapped_subnet_is_located_as_ipv4() {
    let db = cn_and_hk();
    let (a, sc) = ask_db(&db, "::ffff:100.3.1.0", 120);
    let cn_east: Vec<std::net::Ipv4Addr> = vec![
        "203.0.113.80".parse().unwrap(),
        "203.0.113.81".parse().unwrap(),
    ];
    assert_eq!(a, cn_east, "cn-east's edges only");
    assert_eq!(sc, 96 + 17);
    let (a, sc) = ask_db(&db, "::ffff:100.3.200.0", 120);
    assert!(a.contains(&"203.0.113.10".parse().unwrap()), "{a:?}");
    assert_eq!(sc, 96 + 17);
}
