#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on setup
//! Guards the impact preview (`POST /v1/preview`): reading the traffic
//! model over a full 15-minute window and running `decide()` for every
//! (country, pin) cell under the current and the proposed covergen table.
//! Target (issue 29): < 100 ms per preview over the full window.
//!
//! The window is full: 100 proxies, each with 180 five-second buckets of
//! the top 64 countries, "unknown" and "other", unpinned and on two pins
//! (about 200 cells per bucket, 3.6 M counts in all).
//!
//! Baseline: the same preview over a window of one bucket per proxy, so
//! the part that grows with the window shows apart from the decisions.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use edgesteer_config::route::AllHealthy;
use edgesteer_config::{compile, parse, Country, COVERGEN_TOML};
use edgesteer_control::impact::{impact, Side};
use edgesteer_control::traffic::{Traffic, BUCKETS, BUCKET_MS};
use edgesteer_control_api::report::{TrafficCell, TrafficReport};

const PROXIES: usize = 100;

/// The first 64 two-letter codes with a continent, as a proxy's top 64.
fn countries() -> Vec<String> {
    (b'A'..=b'Z')
        .flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]))
        .filter_map(|c| Country::from_bytes(&c))
        .filter(|c| c.builtin_continent().is_some())
        .take(64)
        .map(|c| c.as_str().to_string())
        .collect()
}

fn full_window(now_ms: u64) -> Traffic {
    let mut cells = Vec::new();
    for pin in [None, Some("api-eu.covergen.ai"), Some("api-us.covergen.ai")] {
        for c in countries().into_iter().chain(["".into(), "other".into()]) {
            cells.push(TrafficCell {
                country: c,
                pin: pin.map(str::to_string),
                requests: 17,
            });
        }
    }
    let report = TrafficReport {
        interval_ms: BUCKET_MS,
        cells,
    };
    let t = Traffic::default();
    for p in 0..PROXIES {
        let name = format!("edge-{p}");
        for b in 0..BUCKETS as u64 {
            t.ingest_at(
                &name,
                &report,
                now_ms - (BUCKETS as u64 - 1 - b) * BUCKET_MS,
            );
        }
    }
    t
}

fn bench(c: &mut Criterion) {
    let spec = parse::from_toml(COVERGEN_TOML).unwrap();
    let before = compile(&spec).unwrap();
    let mut drained = spec.clone();
    drained.regions.get_mut("us-east").unwrap().drain = true;
    drained.geo.countries.insert("JP".into(), "us-west".into());
    let after = compile(&drained).unwrap();
    let now = 10_000_000_000;
    let traffic = full_window(now);
    let peaks = BTreeMap::new();
    let preview = |window_ms: u64| {
        let observed = traffic.observed_at(window_ms, now);
        impact(
            &Side {
                table: &before,
                health: &AllHealthy,
            },
            &Side {
                table: &after,
                health: &AllHealthy,
            },
            &observed,
            &peaks,
        )
    };
    let p = preview(900_000);
    assert_eq!(p.proxies, PROXIES);
    assert!(!p.moves.is_empty());
    let mut g = c.benchmark_group("preview");
    g.bench_function("full_15_min_window", |b| {
        b.iter(|| black_box(preview(black_box(900_000))))
    });
    g.bench_function("one_bucket_window", |b| {
        b.iter(|| black_box(preview(black_box(1))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
