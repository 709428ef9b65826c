//! What this host charges for the primitives a proxied request is made of,
//! so a ratio measured on one host can be read on another (issue 30: "find
//! what differs between hosts rather than tuning to one"). The same code
//! costs more where a clock read traps to a slower time source, where an
//! atomic or a memory miss is dearer, or where the allocator is; ours'
//! extra work per request against bare Pingora is mostly these.
//!
//! - `clock`: `Instant::now` (what Pingora's and tokio's timers and our
//!   request timings read) and `SystemTime::now`.
//! - `alloc`: a 64-byte and a 1 KiB allocation and its free, through
//!   mimalloc, the proxy's allocator.
//! - `atomic`: an uncontended `fetch_add`, as every counter and gauge does.
//! - `miss`: one dependent load at a random place in 256 KiB (about L2) and
//!   in 64 MiB (memory): what a cold cell, tree node or map bucket costs.
//!
//! `cargo bench -p edgesteer-benches --bench host`; BENCHMARKS.md keeps
//! each host's figures beside its paired ratio.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use rand::seq::SliceRandom;
use rand::SeedableRng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock");
    g.bench_function("instant_now", |b| b.iter(Instant::now));
    g.bench_function("system_time_now", |b| b.iter(SystemTime::now));
    g.finish();
}

fn alloc(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc");
    g.bench_function("alloc_free_64", |b| {
        b.iter(|| black_box(Vec::<u8>::with_capacity(black_box(64))))
    });
    g.bench_function("alloc_free_1k", |b| {
        b.iter(|| black_box(Vec::<u8>::with_capacity(black_box(1024))))
    });
    g.finish();
}

fn atomic(c: &mut Criterion) {
    let counter = AtomicU64::new(0);
    c.bench_function("atomic/fetch_add", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });
}

/// A random cycle through `bytes` of 64-byte slots: each load's address is
/// the previous load's value, so the loads cannot overlap.
fn cycle(bytes: usize) -> Vec<[usize; 8]> {
    let n = bytes / 64;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(30));
    let mut slots = vec![[0usize; 8]; n];
    for w in 0..n {
        slots[order[w]][0] = order[(w + 1) % n];
    }
    slots
}

fn miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("miss");
    for (name, bytes) in [("chase_256k", 256 << 10), ("chase_64m", 64 << 20)] {
        let slots = cycle(bytes);
        let mut at = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                at = slots[at][0];
                at
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = host;
    config = config();
    targets = clock, alloc, atomic, miss
}
criterion_main!(host);
