#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One million distinct client addresses against the covergen per-IP
//! policy (10,000/s, max_keys 1,000,000), then a second million past the
//! cap: the process's RSS must stay under 200 MB of growth, the key count
//! at the cap, and the sweeper must give it all back once they are idle.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use edgesteer_ratelimit::{Limiter, Outcome, Request};
use http::HeaderMap;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn a_million_addresses_keep_memory_bounded() {
    let (_, table) = edgesteer_config::load_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    let per_ip = &table.rate_limits[..1];
    assert_eq!(per_ip[0].name, "per-ip");
    assert_eq!(per_ip[0].max_keys, 1_000_000);
    let limiter = Limiter::new();
    let bound = limiter.bind(per_ip);
    let headers = HeaderMap::new();
    let before = rss_mb();
    let mut peak = before;
    for i in 0..2_000_000u32 {
        let req = Request {
            client: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            host: None,
            path: "/",
            headers: &headers,
        };
        let outcome = limiter.evaluate(&bound, per_ip, &req, Instant::now());
        assert!(matches!(outcome, Outcome::Allowed(_)), "{i}: {outcome:?}");
        if i % 250_000 == 0 {
            peak = peak.max(rss_mb());
        }
    }
    let after = rss_mb().max(peak);
    let stats = &limiter.stats()[0];
    eprintln!(
        "RSS {before:.1} MB -> {after:.1} MB (+{:.1} MB) for {} tracked keys, {} overflow checks",
        after - before,
        stats.keys,
        stats.overflowed
    );
    assert_eq!(stats.keys, 1_000_000, "tracked keys stop at max_keys");
    assert_eq!(
        stats.overflowed, 1_000_000,
        "the second million shares overflow cells"
    );
    assert!(after - before < 200.0, "RSS grew {:.1} MB", after - before);

    // 100 us per address at 10,000/s: all idle almost at once.
    std::thread::sleep(Duration::from_millis(50));
    limiter.sweep();
    assert_eq!(limiter.stats()[0].keys, 0);
}
