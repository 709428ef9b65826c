#![allow(clippy::unwrap_used, clippy::expect_used)]
// tests may panic
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only
// counts and forwards to the system allocator.
#![allow(unsafe_code)]
//! Once warm, the answer path allocates nothing per query: a thousand
//! queries (geo names with client subnets from many networks, pins,
//! NODATA, NXDOMAIN, REFUSED, the SOA) are answered with no allocation on
//! this thread, through the merged class map as the server uses it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use edgesteer_config::model::RegionSet;
use edgesteer_config::route::AllHealthy;
use edgesteer_config::{load_toml, COVERGEN_TOML};
use edgesteer_dns::render::Rendered;
use edgesteer_dns::respond::{respond, Env, Transport};
use edgesteer_dns::scope::ClassMap;
use edgesteer_geo::{GeoDb, GeoLookup};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn query(id: u16, name: &str, qtype: u16, net: Option<[u8; 3]>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(net.is_some())]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if let Some(n) = net {
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
        m.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, n[0], n[1], n[2]]);
    }
    m
}

#[test]
fn a_thousand_answers_allocate_nothing() {
    let (_, table) = load_toml(COVERGEN_TOML).unwrap();
    let zone = Rendered::new(table.dns.clone().unwrap(), 1);
    let geo = GeoDb::bundled().unwrap();
    let map = ClassMap::build(&table, 1, |f| geo.networks(f).unwrap()).unwrap();
    let env = Env {
        table: &table,
        health: &AllHealthy,
        geo: &geo,
        zone: Some(&zone),
        edges_down: RegionSet::EMPTY,
        classes: Some(&map),
    };
    let mut msgs = Vec::new();
    for i in 0..200u16 {
        let net = [(i % 223 + 1) as u8, (i * 7) as u8, (i * 13) as u8];
        msgs.push(query(i, "api.covergen.ai", 1, Some(net)));
        msgs.push(query(i, "api.covergen.ai", 28, Some(net)));
        msgs.push(query(i, "api-cn.covergen.ai", 1, Some(net)));
        msgs.push(query(i, "nope.covergen.ai", 1, Some(net)));
        msgs.push(query(i, "covergen.ai", 6, None));
    }
    msgs.push(query(1, "example.com", 1, None));
    let src: IpAddr = "192.0.2.53".parse().unwrap();
    let mut out = Vec::with_capacity(4096);
    // Warm: thread-local caches and the buffer.
    for m in &msgs {
        respond(&env, m, src, Transport::Udp, &mut out).unwrap();
    }
    let before = ALLOCS.with(Cell::get);
    let mut answered = 0;
    for m in &msgs {
        respond(&env, m, src, Transport::Udp, &mut out).unwrap();
        answered += usize::from(out.len() > 12);
    }
    let allocs = ALLOCS.with(Cell::get) - before;
    assert_eq!(answered, msgs.len());
    assert_eq!(allocs, 0, "{allocs} allocations for {} answers", msgs.len());
}
