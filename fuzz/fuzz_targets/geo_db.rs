//! Geo databases as loaded on reload (MaxMind format).
//!
//! Input: a database file's bytes. A database is refused or loaded, never
//! a panic; a loaded one answers lookups for any address (the input's
//! own first bytes, and fixed probes) with a country only when it says
//! `Found`, and the same answer with and without the cache.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edgesteer_geo::{GeoDb, GeoLookup, LookupStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(db) = GeoDb::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = db.info();
    let mut probes: Vec<IpAddr> = vec![
        Ipv4Addr::new(8, 8, 8, 8).into(),
        Ipv4Addr::new(80, 128, 0, 1).into(),
        Ipv4Addr::new(255, 255, 255, 254).into(),
        Ipv4Addr::new(1, 0, 0, 0).into(),
        Ipv6Addr::new(0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888).into(),
        Ipv6Addr::new(0x2003, 0, 0, 0, 0, 0, 0, 1).into(),
        Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xfffe,
        )
        .into(),
    ];
    if let Some(b) = data.get(..16) {
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        probes.push(Ipv6Addr::from(a).into());
        probes.push(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into());
    }
    for ip in probes {
        let r = db.lookup_uncached(ip);
        assert_eq!(
            r.country.is_some(),
            r.status == LookupStatus::Found,
            "{ip}: {r:?}"
        );
        assert_eq!(db.lookup(ip), r, "cache disagrees for {ip}");
    }
});
