#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on setup
//! The rate limiter's per-request cost (issue #6): our GCRA cell in a
//! sharded map against a naive `Mutex<HashMap>` token bucket, at 10k and 1M
//! tracked keys, alone and with a second thread checking the same limiter,
//! plus `Limiter::evaluate` with the covergen per-IP policy (hashing the
//! address included). The steering bench prices the same policy inside the
//! full steering path.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgesteer_config::ratelimit::LimitTier;
use edgesteer_config::COVERGEN_TOML;
use edgesteer_ratelimit::state::PolicyState;
use edgesteer_ratelimit::{ip_key, Limiter, Request};
use http::HeaderMap;
use rand::{Rng, SeedableRng};

/// The textbook limiter: one lock around a map of token buckets.
struct Naive {
    map: Mutex<HashMap<u64, (f64, u64)>>,
}

impl Naive {
    fn check(&self, key: u64, tier: &LimitTier, now: u64) -> bool {
        let mut map = self.map.lock().unwrap();
        let (tokens, last) = map.entry(key).or_insert((f64::from(tier.burst), now));
        let refill = (now.saturating_sub(*last)) as f64 / tier.interval_ns as f64;
        *tokens = (*tokens + refill).min(f64::from(tier.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn keys(n: usize) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    (0..n)
        .map(|_| ip_key(IpAddr::from(rng.gen::<[u8; 4]>())))
        .collect()
}

fn per_ip() -> (Limiter, Vec<edgesteer_config::ratelimit::RateLimitPolicy>) {
    let (_, table) = edgesteer_config::load_toml(COVERGEN_TOML).unwrap();
    (Limiter::new(), table.rate_limits[..1].to_vec())
}

fn limiter_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter_check");
    g.throughput(Throughput::Elements(1));
    for n in [10_000usize, 1_000_000] {
        let keys = keys(n);
        let (limiter, policies) = per_ip();
        let bound = limiter.bind(&policies);
        let state: Arc<PolicyState> = bound.state(0).unwrap().clone();
        let tier = policies[0].tiers[0].clone();
        let naive = Arc::new(Naive {
            map: Mutex::new(HashMap::with_capacity(n)),
        });
        let clock = AtomicU64::new(1_000_000_000);
        for &k in &keys {
            state.check(k, &tier, None, 1_000_000_000, false);
            naive.check(k, &tier, 1_000_000_000);
        }
        let mut i = 0usize;
        g.bench_function(format!("gcra_dashmap_{n}_keys"), |b| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                let now = clock.fetch_add(10, Ordering::Relaxed);
                black_box(state.check(keys[i], &tier, None, now, false))
            })
        });
        g.bench_function(format!("naive_mutex_hashmap_{n}_keys"), |b| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                let now = clock.fetch_add(10, Ordering::Relaxed);
                black_box(naive.check(keys[i], &tier, now))
            })
        });
        if n == 10_000 {
            // A second thread hammering the same limiter.
            let stop = Arc::new(AtomicBool::new(false));
            let bg = {
                let (state, naive, stop, keys, tier) = (
                    state.clone(),
                    naive.clone(),
                    stop.clone(),
                    keys.clone(),
                    tier.clone(),
                );
                std::thread::spawn(move || {
                    let mut j = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        j = (j + 104_729) % keys.len();
                        black_box(state.check(keys[j], &tier, None, 2_000_000_000, false));
                        black_box(naive.check(keys[j], &tier, 2_000_000_000));
                    }
                })
            };
            g.bench_function("gcra_dashmap_10000_keys_contended", |b| {
                b.iter(|| {
                    i = (i + 7919) % keys.len();
                    black_box(state.check(keys[i], &tier, None, 2_000_000_000, false))
                })
            });
            g.bench_function("naive_mutex_hashmap_10000_keys_contended", |b| {
                b.iter(|| {
                    i = (i + 7919) % keys.len();
                    black_box(naive.check(keys[i], &tier, 2_000_000_000))
                })
            });
            stop.store(true, Ordering::Relaxed);
            let _ = bg.join();
        }
    }
    g.finish();
}

fn evaluate(c: &mut Criterion) {
    let (limiter, policies) = per_ip();
    let bound = limiter.bind(&policies);
    let headers = HeaderMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let ips: Vec<IpAddr> = (0..10_000)
        .map(|_| IpAddr::from(rng.gen::<[u8; 4]>()))
        .collect();
    let mut g = c.benchmark_group("limiter_evaluate");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let now = Instant::now();
    g.bench_function("per_ip_policy_10000_clients", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(limiter.evaluate(
                &bound,
                &policies,
                &Request {
                    client: ips[i],
                    host: Some("api.covergen.ai"),
                    path: "/v1/covers",
                    headers: &headers,
                },
                now,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, limiter_check, evaluate);
criterion_main!(benches);
