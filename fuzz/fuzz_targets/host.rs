//! `Host` normalisation and host-pin lookup.
//!
//! Input: a `Host` value. Normalising twice changes nothing, a pin or a
//! host-scoped rate limit sees the same host whatever spelling (port,
//! trailing dot, case) it came in, and the normal form of a pinned host
//! finds its pin.
#![no_main]

use std::sync::OnceLock;

use edgesteer_config::host::normalize_host;
use edgesteer_config::RoutingTable;
use edgesteer_fuzz::fixture;
use libfuzzer_sys::fuzz_target;

const TABLE: &str = r#"
default_region = "a"
[hosts]
"api.x.ai" = "b"
"x" = "a"
[regions.a]
backends = [{ address = "127.0.0.1:1" }]
[regions.b]
backends = [{ address = "127.0.0.1:2" }]
[[rate_limits]]
name = "api"
key = "client_ip"
rate = 5
hosts = ["API.x.ai", "x"]
"#;

fn table() -> &'static RoutingTable {
    static T: OnceLock<RoutingTable> = OnceLock::new();
    T.get_or_init(|| fixture(TABLE))
}

fuzz_target!(|data: &[u8]| {
    let host = String::from_utf8_lossy(data);
    let n = normalize_host(&host);
    assert_eq!(normalize_host(n), n, "not idempotent: {host:?} -> {n:?}");
    assert!(!n.ends_with('.'), "trailing dot kept: {host:?} -> {n:?}");

    let t = table();
    let pin = t.pin_for_host(&host);
    assert_eq!(pin, t.pin_for_host(n), "{host:?} and {n:?} pin differently");
    assert_eq!(
        pin,
        t.pin_for_host(&host.to_ascii_uppercase()),
        "case changed the pin of {host:?}"
    );
    if let Some((h, r)) = t.pins().find(|(h, _)| h.eq_ignore_ascii_case(n)) {
        assert_eq!(
            pin,
            Some(r),
            "{host:?} normalises to pinned host {h} but found no pin"
        );
    }
    let policy = &t.rate_limits[0];
    assert_eq!(
        policy.applies(Some(&host), "/"),
        policy.applies(Some(n), "/"),
        "{host:?} and {n:?} are scoped differently"
    );
});
