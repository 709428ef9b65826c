//! Sticky keys: the header or cookie that pins a user to a release track.
//!
//! Input (text): first line `<table 0-3> <client address>`, then header
//! lines `name: value`. The key found is a non-empty piece of a request
//! header, from the first configured source that has one; without one
//! the hash is the client address's, and the bucket is always in range.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use edgesteer_config::model::{StickySource, BUCKETS};
use edgesteer_config::route::bucket;
use edgesteer_config::sticky::{cookie, sticky_for, sticky_key, sticky_of};
use edgesteer_config::RoutingTable;
use edgesteer_fuzz::{fixture, headers};
use libfuzzer_sys::fuzz_target;

const STICKY: [&str; 4] = [
    "",
    r#""header:x-user", "cookie:sid""#,
    r#""cookie:sid", "cookie:session-id""#,
    r#""header:authorization""#,
];

fn tables() -> &'static [RoutingTable] {
    static T: OnceLock<Vec<RoutingTable>> = OnceLock::new();
    T.get_or_init(|| {
        STICKY
            .iter()
            .map(|s| {
                fixture(&format!(
                    "default_region = \"a\"\n[release]\nsalt = \"s\"\nsticky_keys = [{s}]\n[regions.a]\ncanary_bps = 5000\nbackends = [{{ address = \"127.0.0.1:1\" }}, {{ address = \"127.0.0.1:2\", track = \"canary\" }}]\n"
                ))
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let (which, client) = first.split_once(' ').unwrap_or(("1", &first));
    let table = &tables()[which.trim().parse::<usize>().unwrap_or(1) % STICKY.len()];
    let client: IpAddr = client
        .trim()
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let pairs: Vec<(&str, &[u8])> = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&l[..colon]).ok()?;
            let value = l[colon + 1..].strip_prefix(b" ").unwrap_or(&l[colon + 1..]);
            Some((name, value))
        })
        .collect();
    let h = headers(pairs.iter().copied());

    let hash = sticky_of(table, &h, client);
    assert!(bucket(hash) < BUCKETS);
    let key = sticky_key(table, &h);
    assert_eq!(hash, sticky_for(table, key, client));
    match key {
        None => {
            assert_eq!(hash, sticky_for(table, None, client));
            for s in &table.release.sticky {
                let present = match s {
                    StickySource::Header(n) => h.get(n.as_str()).is_some_and(|v| !v.is_empty()),
                    StickySource::Cookie(n) => cookie(&h, n).is_some_and(|v| !v.is_empty()),
                };
                assert!(!present, "source {s:?} present but not used");
            }
        }
        Some(k) => {
            assert!(!k.is_empty());
            let within = h
                .values()
                .any(|v| v.as_bytes().windows(k.len()).any(|w| w == k));
            assert!(within, "sticky key {k:?} is not from the request");
            assert!(
                !k.contains(&b';')
                    || table
                        .release
                        .sticky
                        .iter()
                        .any(|s| matches!(s, StickySource::Header(_)))
            );
        }
    }
});
