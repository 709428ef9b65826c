#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on setup
//! Guards the impact preview (`POST /v1/preview`): reading the traffic
//! model over a full 15-minute window and running `decide()` for every
//! (country, pin) cell under the current and the proposed covergen table.
//! Target (issue 29): < 100 ms per preview over the full window.
//!
//! The window is full: 100 proxies, each with 180 five-second buckets of
//! the top 64 countries, "unknown" and "other", unpinned and on two pins
//! (about 200 cells per bucket, 3.6 M counts in all), and covergen's four
//! rate-limit tiers with 24 rate bins each (the fleet-wide limits model);
//! the change also sets a new limit on the `pro` tier, so the 429
//! projection runs too.
//!
//! Baseline: the same preview over a window of one bucket per proxy, so
//! the part that grows with the window shows apart from the decisions.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use edgesteer_config::route::AllHealthy;
use edgesteer_config::{compile, parse, Country, COVERGEN_TOML};
use edgesteer_control::impact::{impact, Side};
use edgesteer_control::impact_limits::project;
use edgesteer_control::limit_model::LimitModel;
use edgesteer_control::traffic::{Traffic, BUCKETS, BUCKET_MS};
use edgesteer_control_api::limits::TierUsage;
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

fn full_window(now_ms: u64) -> (Traffic, LimitModel) {
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
    let limits = [
        ("per-ip", "default"),
        ("api-key", "free"),
        ("api-key", "pro"),
        ("api-key", "enterprise"),
    ]
    .iter()
    .map(|(policy, tier)| {
        let mut t = TierUsage {
            policy: policy.to_string(),
            tier: tier.to_string(),
            ..TierUsage::default()
        };
        // Keys at 1.3^k requests/s: about 24 bins from 1 to 500.
        for k in 0..24 {
            t.add_key(1.3f64.powi(k) as u64 * 5, 0, BUCKET_MS);
        }
        t
    })
    .collect();
    let report = TrafficReport {
        interval_ms: BUCKET_MS,
        cells,
        limits,
    };
    let (t, l) = (Traffic::default(), LimitModel::default());
    for p in 0..PROXIES {
        let name = format!("edge-{p}");
        for b in 0..BUCKETS as u64 {
            let at = now_ms - (BUCKETS as u64 - 1 - b) * BUCKET_MS;
            t.ingest_at(&name, &report, at);
            l.ingest_at(&name, &report, at);
        }
    }
    (t, l)
}

fn bench(c: &mut Criterion) {
    let spec = parse::from_toml(COVERGEN_TOML).unwrap();
    let before = compile(&spec).unwrap();
    let mut drained = spec.clone();
    drained.regions.get_mut("us-east").unwrap().drain = true;
    drained.geo.countries.insert("JP".into(), "us-west".into());
    let pro = drained
        .rate_limits
        .iter_mut()
        .find(|p| p.name == "api-key")
        .and_then(|p| p.tiers.get_mut("pro"))
        .unwrap();
    pro.rate = 10;
    let after = compile(&drained).unwrap();
    let now = 10_000_000_000;
    let (traffic, limits) = full_window(now);
    let peaks = BTreeMap::new();
    let preview = |window_ms: u64| {
        let observed = traffic.observed_at(window_ms, now);
        let mut p = impact(
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
        );
        let tiers = limits.observed_at(window_ms, now);
        p.limits = project(
            &before.rate_limits,
            &after.rate_limits,
            &tiers,
            &mut p.unmodeled,
        );
        p
    };
    let p = preview(900_000);
    assert_eq!(p.proxies, PROXIES);
    assert!(!p.moves.is_empty());
    let pro = p.limits.iter().find(|l| l.tier == "pro").unwrap();
    assert!(pro.after_429_per_s > pro.before_429_per_s, "{pro:?}");
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
