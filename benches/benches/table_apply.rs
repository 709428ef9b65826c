#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on setup
//! Guards the reload path: parsing, compiling and installing a large
//! routing table (10,000 backends over 8 regions) into a running
//! `Steering`, which is what every push from the config service costs a
//! proxy. Requests keep reading the previous snapshot meanwhile.
//!
//! And the health service's tick at the table limit (20,000 backends):
//! rebuilding the probe plan (what every 100 ms tick cost before plans
//! were rebuilt only on install) against asking for it unchanged.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use edgesteer_config::wire::BackendSpec;
use edgesteer_config::{parse, TableSpec, COVERGEN_TOML};
use edgesteer_geo::GeoDb;
use edgesteer_proxy::metrics::Metrics;
use edgesteer_proxy::steer::Steering;

fn big_table(backends: usize) -> TableSpec {
    let mut spec = parse::from_toml(COVERGEN_TOML).unwrap();
    let n = spec.regions.len();
    for (i, r) in spec.regions.values_mut().enumerate() {
        r.backends = (0..backends / n)
            .map(|j| BackendSpec {
                address: format!("10.{i}.{}.{}:8080", j / 250, j % 250 + 1),
                weight: 1 + (j % 3) as u32,
                track: None,
            })
            .collect();
    }
    spec
}

fn apply(c: &mut Criterion) {
    let spec = big_table(10_000);
    let json = serde_json::to_vec(&spec).unwrap();
    let table = edgesteer_config::compile(&spec).unwrap();
    let steer = Steering::new(
        1,
        spec.clone(),
        table,
        Arc::new(GeoDb::bundled().unwrap()),
        Arc::new(Metrics::new().unwrap()),
    );
    let mut g = c.benchmark_group("table_apply_10k_backends");
    g.sample_size(20);
    g.bench_function("parse_json", |b| {
        b.iter(|| black_box(parse::from_json(&json).unwrap()))
    });
    g.bench_function("compile", |b| {
        b.iter(|| black_box(edgesteer_config::compile(&spec).unwrap()))
    });
    let mut v = 1;
    g.bench_function("parse_compile_install", |b| {
        b.iter(|| {
            v += 1;
            let s = parse::from_json(&json).unwrap();
            let t = edgesteer_config::compile(&s).unwrap();
            black_box(steer.install(v, s, t));
        })
    });
    g.finish();
}

fn upkeep(c: &mut Criterion) {
    let spec = big_table(20_000);
    let table = edgesteer_config::compile(&spec).unwrap();
    let steer = Arc::new(Steering::new(
        1,
        spec,
        table,
        Arc::new(GeoDb::bundled().unwrap()),
        Arc::new(Metrics::new().unwrap()),
    ));
    let mut g = c.benchmark_group("upkeep_20k_backends");
    g.sample_size(20);
    let snap = steer.current();
    g.bench_function("probe_targets_rebuilt", |b| {
        b.iter(|| black_box(edgesteer_proxy::upkeep::targets(&snap)))
    });
    let plan = edgesteer_proxy::upkeep::probe_plan(steer.clone());
    assert!(plan().is_some(), "the first call plans");
    g.bench_function("probe_plan_unchanged", |b| b.iter(|| black_box(plan())));
    g.finish();
}

criterion_group!(benches, apply, upkeep);
criterion_main!(benches);
