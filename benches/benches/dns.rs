#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on setup
//! The GeoDNS answer path, one query in, one answer out, without sockets:
//! a query for `api.covergen.ai` with a client subnet from one of 40
//! countries' networks, located through the merged class map (as served)
//! and through direct database lookups (before the map is built), plus
//! an NXDOMAIN. What `benches/dns.sh` measures end to end, minus the
//! kernel.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgesteer_config::model::RegionSet;
use edgesteer_config::route::AllHealthy;
use edgesteer_config::{load_toml, COVERGEN_TOML};
use edgesteer_dns::render::Rendered;
use edgesteer_dns::respond::{respond, Env, Transport};
use edgesteer_dns::scope::ClassMap;
use edgesteer_geo::{GeoDb, GeoLookup};

/// The 40 client addresses of the geo-mix load script (IPv4 ones).
const CLIENTS: [[u8; 4]; 20] = [
    [8, 8, 8, 0],
    [24, 0, 0, 0],
    [177, 0, 0, 0],
    [200, 0, 0, 0],
    [85, 214, 132, 0],
    [81, 2, 69, 0],
    [41, 0, 0, 0],
    [196, 0, 0, 0],
    [94, 200, 0, 0],
    [1, 0, 16, 0],
    [139, 59, 0, 0],
    [49, 255, 0, 0],
    [43, 0, 0, 0],
    [218, 188, 0, 0],
    [1, 64, 0, 0],
    [114, 114, 114, 0],
    [223, 5, 5, 0],
    [80, 128, 0, 0],
    [202, 96, 128, 0],
    [1, 36, 0, 0],
];

/// An A query for api.covergen.ai with an ECS /24 option for `net`.
fn query(id: u16, name: &str, net: [u8; 4]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
    m.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, net[0], net[1], net[2]]);
    m
}

fn bench(c: &mut Criterion) {
    let (_, table) = load_toml(COVERGEN_TOML).unwrap();
    let zone = Rendered::new(table.dns.clone().unwrap(), 1);
    let geo = GeoDb::bundled().unwrap();
    let map = ClassMap::build(&table, 1, |f| geo.networks(f).unwrap()).unwrap();
    let queries: Vec<Vec<u8>> = (0..CLIENTS.len())
        .map(|i| query(i as u16, "api.covergen.ai", CLIENTS[i]))
        .collect();
    let nx = query(1, "nothing.covergen.ai", CLIENTS[0]);
    let src: IpAddr = "192.0.2.53".parse().unwrap();
    let mut g = c.benchmark_group("dns_answer");
    g.throughput(Throughput::Elements(1));
    for (label, classes) in [("merged_map", Some(&map)), ("direct_lookup", None)] {
        let env = Env {
            table: &table,
            health: &AllHealthy,
            geo: &geo,
            zone: Some(&zone),
            edges_down: RegionSet::EMPTY,
            classes,
        };
        let mut out = Vec::with_capacity(1500);
        let mut i = 0;
        g.bench_function(format!("geo_a_ecs_{label}"), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(respond(
                    &env,
                    black_box(&queries[i]),
                    src,
                    Transport::Udp,
                    &mut out,
                ))
            })
        });
        g.bench_function(format!("nxdomain_{label}"), |b| {
            b.iter(|| black_box(respond(&env, black_box(&nx), src, Transport::Udp, &mut out)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
