//! The release binary's code layout list (`edgesteer/link-order.txt`, read
//! by `build.rs`, made by `scripts/link-order.sh`): one symbol per line,
//! each once, and covering what a serving proxy runs per request (not only
//! what it runs at start), so a list regenerated from a run that skipped a
//! path (no TLS, no GeoDNS query) fails here instead of quietly leaving
//! that code scattered. Whether a release binary is laid out by it is
//! `scripts/link-order.sh check` (a release build; not in the test suite).

use std::collections::HashSet;
use std::path::Path;

fn list() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/link-order.sh makes it)", path.display()));
    text.lines().map(str::to_owned).collect()
}

#[test]
fn the_list_is_one_symbol_per_line_each_once() {
    let list = list();
    assert!(list.len() > 1000, "only {} symbols listed", list.len());
    let mut seen = HashSet::new();
    for (i, name) in list.iter().enumerate() {
        let line = i + 1;
        assert!(
            !name.is_empty() && !name.contains(char::is_whitespace),
            "line {line}: {name:?} is not a symbol name"
        );
        assert!(
            !name.contains('\''),
            "line {line}: callgrind's recursion mark left in {name}"
        );
        assert!(seen.insert(name), "line {line}: {name} listed twice");
    }
}

#[test]
fn the_list_covers_what_a_serving_proxy_runs() {
    let list = list();
    let has = |parts: &[&str]| {
        list.iter()
            .any(|name| parts.iter().all(|part| name.contains(part)))
    };
    let paths: &[(&str, &[&str])] = &[
        ("Pingora's request future", &["process_new_http"]),
        ("the request filter", &["edgesteer_proxy", "request_filter"]),
        (
            "the choice of an upstream",
            &["edgesteer_proxy", "upstream_peer"],
        ),
        ("steering's decide", &["edgesteer_config", "decide"]),
        ("the geo lookup", &["edgesteer_geo", "lookup"]),
        (
            "the rate limiter's answer",
            &["edgesteer_ratelimit", "ratelimit_header"],
        ),
        ("health probes", &["edgesteer_health", "probe"]),
        ("the TLS handshake", &["rustls", "handshake"]),
        ("h2", &["2h2", "proto"]),
        ("a GeoDNS answer", &["edgesteer_dns", "respond"]),
        ("the metrics scrape", &["prometheus", "encode"]),
        ("the allocator", &["mi_malloc"]),
    ];
    let missing: Vec<&str> = paths
        .iter()
        .filter(|(_, parts)| !has(parts))
        .map(|(what, _)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "edgesteer/link-order.txt lists nothing of {missing:?}: re-run scripts/link-order.sh \
         with a workload that reaches them"
    );
}
