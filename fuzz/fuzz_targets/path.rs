//! Rate-limit path normalisation (policy `path_prefixes`).
//!
//! Input: a request path. The normal form is absolute, has no empty, `.`
//! or `..` segment, no backslash and no escape left to decode, and
//! normalising it again changes nothing; a path that is already normal
//! takes the policy's fast path to the same answer.
#![no_main]

use std::sync::OnceLock;

use edgesteer_config::ratelimit::normalize_path;
use edgesteer_config::RoutingTable;
use edgesteer_fuzz::fixture;
use libfuzzer_sys::fuzz_target;

const TABLE: &str = r#"
default_region = "a"
[regions.a]
backends = [{ address = "127.0.0.1:1" }]
[[rate_limits]]
name = "api"
key = "client_ip"
rate = 5
path_prefixes = ["/v1/", "/admin"]
"#;

fn table() -> &'static RoutingTable {
    static T: OnceLock<RoutingTable> = OnceLock::new();
    T.get_or_init(|| fixture(TABLE))
}

fn has_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let n = normalize_path(&path);
    assert!(n.starts_with('/'), "{path:?} -> {n:?} not absolute");
    assert!(!n.contains("//"), "{path:?} -> {n:?} has an empty segment");
    assert!(!n.contains('\\'), "{path:?} -> {n:?} kept a backslash");
    assert!(
        !n.split('/').any(|s| s == "." || s == ".."),
        "{path:?} -> {n:?} has a dot segment"
    );
    assert!(!has_escape(&n), "{path:?} -> {n:?} still has an escape");
    assert_eq!(normalize_path(&n), n, "not idempotent: {path:?} -> {n:?}");

    let policy = &table().rate_limits[0];
    let by_normal = ["/v1/", "/admin"].iter().any(|p| n.starts_with(p));
    if path.starts_with('/') {
        assert_eq!(
            policy.applies(None, &path),
            by_normal,
            "fast path disagrees on {path:?}"
        );
    }
});
