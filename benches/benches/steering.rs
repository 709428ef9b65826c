#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on setup
//! Guards the per-request steering work of the data plane: client IP
//! extraction (trusted `X-Forwarded-For`), geo lookup on the bundled
//! database, classification and `decide()`, plus loading the routing
//! snapshot under contention. Targets (issue #2): <= 1 us per request with
//! random IPs, <= 0.5 us once lookups are cached.
//!
//! Baselines: the snapshot load is compared with a naive `RwLock<Arc<_>>`.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use edgesteer_config::client_ip::client_ip;
use edgesteer_config::route::{decide, sticky_hash, AllHealthy, HealthView, Request};
use edgesteer_config::{parse, ClientClass, RoutingTable, COVERGEN_TOML};
use edgesteer_geo::{GeoDb, GeoLookup};
use edgesteer_health::HealthRegistry;
use http::{HeaderMap, HeaderValue};
use rand::{Rng, SeedableRng};

/// The covergen table with literal backend addresses (as in the demo), so
/// every backend is available and `decide` takes its common path.
fn table() -> RoutingTable {
    let mut spec = parse::from_toml(COVERGEN_TOML).expect("covergen parses");
    spec.client_ip.trusted_proxies = vec!["127.0.0.0/8".into()];
    for (i, r) in spec.regions.values_mut().enumerate() {
        for (j, b) in r.backends.iter_mut().enumerate() {
            b.address = format!("127.0.{i}.{}:8080", j + 1);
        }
    }
    edgesteer_config::compile(&spec).expect("covergen compiles")
}

/// Random public IPv4 addresses (uniform over the space, skipping nothing:
/// the lookup short-circuits non-routable ones, as in production).
fn random_ips(n: usize) -> Vec<IpAddr> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..n).map(|_| IpAddr::from(rng.gen::<[u8; 4]>())).collect()
}

fn steer_one(
    t: &RoutingTable,
    geo: &GeoDb,
    health: &impl edgesteer_config::route::HealthView,
    headers: &HeaderMap,
    uncached: bool,
) -> u64 {
    let peer: IpAddr = [127, 0, 0, 1].into();
    let client = client_ip(peer, headers, t);
    steer_client(t, geo, health, client, uncached)
}

/// Everything after the client address is known.
fn steer_client(
    t: &RoutingTable,
    geo: &GeoDb,
    health: &impl edgesteer_config::route::HealthView,
    client: IpAddr,
    uncached: bool,
) -> u64 {
    let g = if uncached {
        geo.lookup_uncached(client)
    } else {
        geo.lookup(client)
    };
    let class = t.classify(g.country, g.continent);
    let pin = t.pin_for_host("api.covergen.ai");
    let sticky = match client {
        IpAddr::V4(v4) => sticky_hash(t.release.salt.as_bytes(), &v4.octets()),
        IpAddr::V6(v6) => sticky_hash(t.release.salt.as_bytes(), &v6.octets()),
    };
    match decide(
        t,
        &Request {
            class,
            pin,
            sticky,
            tried: &[],
        },
        health,
    ) {
        edgesteer_config::route::Decision::Route(r) => u64::from(r.backend.0),
        _ => u64::MAX,
    }
}

fn headers_for(ips: &[IpAddr]) -> Vec<HeaderMap> {
    ips.iter()
        .map(|ip| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-forwarded-for",
                HeaderValue::from_str(&ip.to_string()).expect("ip header"),
            );
            h
        })
        .collect()
}

fn steering(c: &mut Criterion) {
    let t = table();
    let geo = GeoDb::bundled().expect("bundled db");
    let registry = HealthRegistry::new();
    let health = registry.bind(&t);
    let ips = random_ips(100_000);
    let headers = headers_for(&ips);

    let mut g = c.benchmark_group("steering");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("full_random_ip_uncached", |b| {
        b.iter(|| {
            i = (i + 1) % headers.len();
            black_box(steer_one(&t, &geo, &health, &headers[i], true))
        })
    });
    g.bench_function("full_random_ip_cached_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % headers.len();
            black_box(steer_one(&t, &geo, &health, &headers[i], false))
        })
    });
    // 1,000 returning clients: the per-thread cache answers.
    let hot = &headers[..1000];
    g.bench_function("full_hot_ips_cached", |b| {
        b.iter(|| {
            i = (i + 1) % hot.len();
            black_box(steer_one(&t, &geo, &health, &hot[i], false))
        })
    });
    // The same with the covergen per-IP rate limit checked first (what the
    // proxy does when the table has it): the limiter's share of a request.
    let limiter = edgesteer_ratelimit::Limiter::new();
    let per_ip = t.rate_limits[..1].to_vec();
    let bound = limiter.bind(&per_ip);
    let now = std::time::Instant::now();
    let limited = |h: &HeaderMap, uncached: bool| {
        let client = client_ip([127, 0, 0, 1].into(), h, &t);
        let outcome = limiter.evaluate(
            &bound,
            &per_ip,
            &edgesteer_ratelimit::Request {
                client,
                host: Some("api.covergen.ai"),
                path: "/v1/covers",
                headers: h,
            },
            now,
        );
        (outcome, steer_client(&t, &geo, &health, client, uncached))
    };
    g.bench_function("full_random_ip_uncached_with_ip_limit", |b| {
        b.iter(|| {
            i = (i + 1) % headers.len();
            black_box(limited(&headers[i], true))
        })
    });
    g.bench_function("full_hot_ips_cached_with_ip_limit", |b| {
        b.iter(|| {
            i = (i + 1) % hot.len();
            black_box(limited(&hot[i], false))
        })
    });
    g.bench_function("geo_lookup_uncached", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(geo.lookup_uncached(ips[i]))
        })
    });
    let de = t.classify(edgesteer_config::Country::parse("DE"), None);
    bench_decide(&mut g, "decide_only", &t, de, &AllHealthy);
    bench_decide(&mut g, "decide_with_health_view", &t, de, &health);
    g.finish();
}

/// `decide()` alone for one client class, with a new sticky key each time.
fn bench_decide<H: HealthView>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    t: &RoutingTable,
    class: ClientClass,
    health: &H,
) {
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let req = Request {
                class,
                pin: None,
                sticky: i,
                tried: &[],
            };
            black_box(decide(t, &req, health))
        })
    });
}

/// One reader per iteration while another thread keeps loading too:
/// ArcSwap (what the proxy does) against a naive RwLock<Arc<_>>.
fn snapshot_load(c: &mut Criterion) {
    let t = Arc::new(table());
    let swap = Arc::new(ArcSwap::from(t.clone()));
    let lock = Arc::new(RwLock::new(t));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bg = {
        let (swap, lock, stop) = (swap.clone(), lock.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                black_box(swap.load_full());
                black_box(lock.read().map(|g| g.clone()).ok());
            }
        })
    };
    let mut g = c.benchmark_group("snapshot_load_contended");
    g.bench_function("arc_swap_load_full", |b| {
        b.iter(|| black_box(swap.load_full()))
    });
    g.bench_function("naive_rwlock_arc_clone", |b| {
        b.iter(|| black_box(lock.read().map(|g| g.clone()).ok()))
    });
    g.bench_function("arc_swap_store_while_loading", |b| {
        b.iter_batched(
            || Arc::new(table()),
            |next| swap.store(next),
            BatchSize::LargeInput,
        )
    });
    g.finish();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = bg.join();
}

criterion_group!(benches, steering, snapshot_load);
criterion_main!(benches);
