//! Rate limiting across a fleet of two proxies sharing a real Redis: one
//! global limit, Redis outages, and a shared block list.

use std::time::Duration;

use edgesteer_tests::*;
use serde_json::Value;

use crate::ratelimit::{assert_within_5pct, backend, expected, one_client};

const FLEET: &str = r#"
[[rate_limits]]
name = "fleet"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_open"
default_tier = "t"
tiers = { t = { rate = 100, burst = 10 }, lone = { rate = 100, burst = 2 } }
keys = { "fleet-key" = "t", "lone-key" = "lone" }
"#;

/// docs/design.md: with N proxies the fleet admits at most
/// rate x W + burst + (N - 1) x (burst + rate x (2 x sync interval + rtt)).
/// Here N = 2, sync 50 ms, and we allow 50 ms of round trip.
pub(crate) fn fleet_bound(rate: u32, burst: u32, run: &Paced) -> f64 {
    expected(rate, burst, run) + f64::from(burst) + f64::from(rate) * 0.15
}

async fn fleet(
    wd: &Workdir,
    spec: &edgesteer_config::TableSpec,
    redis: &RedisProc,
) -> (Proxy, Proxy) {
    let args = vec![
        "--redis".to_string(),
        redis.url(),
        "--redis-sync-ms".into(),
        "50".into(),
    ];
    let a = wd.start_proxy(spec, true, args.clone()).await.unwrap();
    let b = wd.start_proxy(spec, true, args).await.unwrap();
    (a, b)
}

/// Whether the fleet's live-blocks hash in Redis holds `addr` (None when
/// Redis gave no clear answer).
async fn in_live_blocks(redis: &RedisProc, addr: &str) -> Option<bool> {
    match redis
        .command(&["HEXISTS", "edgesteer:blocks:live", addr])
        .await
        .ok()?
        .as_str()
    {
        ":1" => Some(true),
        ":0" => Some(false),
        _ => None,
    }
}

/// One per-IP policy, for the block-list tests.
const PER_IP: &str = "[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 1000\n";

/// The status of a request to `p` from client address `addr`.
async fn status_as(p: &Proxy, addr: &str) -> u16 {
    reqwest::Client::new()
        .get(p.url("/x"))
        .header("x-forwarded-for", addr)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn store_up(p: &Proxy) -> f64 {
    metric_value(
        &p.metrics().await.unwrap_or_default(),
        "edgesteer_ratelimit_store_up",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_one_global_limit_through_redis() {
    let _heavy = heavy().await;
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let (a, b) = fleet(&wd, &limits_table(be.addr, FLEET).unwrap(), &redis).await;

    // 2x the fleet rate, alternating between the proxies.
    let run = send_paced(one_client(
        vec![a.url("/x"), b.url("/x")],
        "198.51.100.7",
        "fleet-key",
        200,
        5,
        10,
    ))
    .await;
    assert!(run.other.is_empty(), "{:?}", run.other);
    let exact = expected(100, 10, &run);
    let bound = fleet_bound(100, 10, &run);
    let got = run.ok as f64;
    assert!(
        got <= bound,
        "fleet admitted {got}, more than the documented bound {bound:.0} (exact limit {exact:.0})"
    );
    assert!(
        got >= exact * 0.9,
        "fleet admitted only {got} of {exact:.0}"
    );
    eprintln!(
        "fleet: admitted {got} (exact {exact:.0}, bound {bound:.0}) over {:?}",
        run.elapsed
    );
    // One client on one proxy, with a burst (2 = 20 ms) shorter than the
    // sync interval (50 ms): its own use, reported back by Redis, must not
    // be counted twice (that held it near 70% of the rate).
    let lone = send_paced(one_client(
        vec![a.url("/x")],
        "198.51.100.9",
        "lone-key",
        200,
        3,
        6,
    ))
    .await;
    assert_within_5pct("one proxy, short burst, global", &lone, 100, 2);
    for p in [&a, &b] {
        let m = p.metrics().await.unwrap();
        assert_eq!(metric_value(&m, "edgesteer_ratelimit_store_up"), 1.0);
        assert!(metric_value(&m, "edgesteer_ratelimit_store_syncs_total") > 0.0);
        assert_eq!(
            metric_value(&m, "edgesteer_ratelimit_store_errors_total"),
            0.0
        );
    }
}

const OUTAGE: &str = r#"
[[rate_limits]]
name = "open"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_open"
path_prefixes = ["/open"]
tiers = { t = { rate = 50, burst = 10 } }
keys = { "k1" = "t", "k2" = "t" }

[[rate_limits]]
name = "closed"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_closed"
path_prefixes = ["/closed"]
tiers = { t = { rate = 50, burst = 10 } }
keys = { "k1" = "t" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_open_or_closed_and_recovers_by_itself() {
    // Paced load: not at the same time as other heavy tests (2 cores).
    let _heavy = heavy().await;
    let be = backend().await;
    let mut redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let (a, b) = fleet(&wd, &limits_table(be.addr, OUTAGE).unwrap(), &redis).await;
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(url)
                .header("x-api-key", "k1")
                .header("x-forwarded-for", "198.51.100.8")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(a.url("/closed/x")).await.status(), 200);

    // A hung Redis (SIGSTOP): requests never wait for it. Had a request
    // awaited Redis even once it would have taken the syncer's 250 ms
    // timeout, so 1.5 s could hold at most 6 sequential requests.
    redis.pause();
    let hung = std::time::Instant::now();
    let (mut served, mut slowest) = (0, Duration::ZERO);
    while hung.elapsed() < Duration::from_millis(1500) {
        let t = std::time::Instant::now();
        let r = get(a.url("/open/x")).await;
        slowest = slowest.max(t.elapsed());
        assert!(matches!(r.status().as_u16(), 200 | 429), "{}", r.status());
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("Redis hung: {served} requests answered in 1.5 s, slowest {slowest:?}");
    assert!(
        served >= 30,
        "only {served} requests in 1.5 s while Redis hung (slowest {slowest:?})"
    );
    // Not even once: a request that awaited Redis would have taken at
    // least the syncer's 250 ms command timeout.
    assert!(
        slowest < Duration::from_millis(250),
        "a request took {slowest:?} while Redis hung: it waited on Redis"
    );
    // The syncer noticed (fail_closed now answers 503) ...
    let down = wait_until(Duration::from_secs(3), || async {
        store_up(&a).await == 0.0
    })
    .await;
    assert!(down.is_some(), "a hung Redis was not noticed");
    assert_eq!(get(a.url("/closed/x")).await.status(), 503);
    // ... and recovers when Redis does.
    redis.resume();
    let up = wait_until(Duration::from_secs(5), || async {
        store_up(&a).await == 1.0
    })
    .await;
    assert!(up.is_some(), "no recovery after Redis resumed");
    assert_eq!(get(a.url("/closed/x")).await.status(), 200);

    redis.kill();
    for p in [&a, &b] {
        let down = wait_until(Duration::from_secs(5), || async {
            store_up(p).await == 0.0
        })
        .await;
        assert!(down.is_some(), "proxy did not notice Redis going away");
    }
    // fail_closed: 503 with a reason, on both proxies.
    for p in [&a, &b] {
        let r = get(p.url("/closed/x")).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "rate_limit_store_unavailable");
        assert_eq!(body["policy"], "closed");
    }
    // fail_open: each proxy keeps its local limit.
    let local = send_paced(one_client(
        vec![a.url("/open/x")],
        "198.51.100.8",
        "k1",
        100,
        2,
        6,
    ))
    .await;
    assert_within_5pct("fail_open on local limits", &local, 50, 10);
    let m = a.metrics().await.unwrap();
    assert!(metric_value(&m, "edgesteer_ratelimit_store_errors_total") >= 1.0);
    assert!(
        metric_value(
            &m,
            r#"edgesteer_ratelimit_store_refusals_total{policy="closed"}"#
        ) >= 1.0
    );

    // Redis back on the same port: both proxies resume without a restart.
    redis.restart().await.unwrap();
    for p in [&a, &b] {
        let up = wait_until(Duration::from_secs(5), || async {
            store_up(p).await == 1.0
        })
        .await;
        assert!(up.is_some(), "proxy did not reconnect to Redis");
    }
    assert_eq!(get(b.url("/closed/x")).await.status(), 200);
    let run = send_paced(one_client(
        vec![a.url("/open/y"), b.url("/open/y")],
        "198.51.100.8",
        "k2",
        100,
        3,
        6,
    ))
    .await;
    assert!(run.other.is_empty(), "{:?}", run.other);
    let bound = fleet_bound(50, 10, &run);
    assert!(
        (run.ok as f64) <= bound,
        "after recovery the fleet admitted {} > bound {bound:.0}: global limiting did not resume",
        run.ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_block_list_is_shared_by_the_fleet() {
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let spec = limits_table(be.addr, PER_IP).unwrap();
    let (a, b) = fleet(&wd, &spec, &redis).await;
    let client = reqwest::Client::new();
    assert_eq!(status_as(&b, "198.51.100.77").await, 200);

    // Blocked on A by an operator: B refuses the address within a few syncs.
    let added = client
        .post(format!("http://{}/v1/ratelimit/blocks", a.admin))
        .json(&serde_json::json!({ "ip": "198.51.100.77", "seconds": 300, "reason": "scraper" }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let shared = wait_until(Duration::from_secs(3), || async {
        status_as(&b, "198.51.100.77").await == 429
    })
    .await;
    assert!(shared.is_some(), "B never saw A's block");
    let listed: Value = reqwest::get(format!("http://{}/v1/ratelimit/blocks", b.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["blocks"][0]["reason"], "scraper", "{listed}");
    assert_eq!(status_as(&b, "198.51.100.78").await, 200);

    // A proxy that starts later learns the fleet's blocks, even once the
    // stream's old entries are trimmed away (it loads the live snapshot).
    let trimmed = redis
        .command(&["XTRIM", "edgesteer:blocks", "MAXLEN", "0"])
        .await
        .unwrap();
    assert_eq!(trimmed, ":1", "the block entry was in the stream");
    let c = wd
        .start_proxy(
            &spec,
            true,
            vec![
                "--redis".into(),
                redis.url(),
                "--redis-sync-ms".into(),
                "50".into(),
            ],
        )
        .await
        .unwrap();
    let replayed = wait_until(Duration::from_secs(3), || async {
        status_as(&c, "198.51.100.77").await == 429
    })
    .await;
    assert!(replayed.is_some(), "a new proxy did not learn the block");

    // A block that ends is tidied out of the fleet's live-blocks hash.
    let short = client
        .post(format!("http://{}/v1/ratelimit/blocks", a.admin))
        .json(&serde_json::json!({ "ip": "198.51.100.79", "seconds": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 201);
    let stored = wait_until(Duration::from_secs(3), || async {
        in_live_blocks(&redis, "198.51.100.79").await == Some(true)
    })
    .await;
    assert!(
        stored.is_some(),
        "the block never reached the live-blocks hash"
    );
    let tidied = wait_until(Duration::from_secs(6), || async {
        in_live_blocks(&redis, "198.51.100.79").await == Some(false)
    })
    .await;
    assert!(
        tidied.is_some(),
        "an ended block stayed in the live-blocks hash"
    );

    // Lifted on B: served again everywhere.
    let lifted = client
        .delete(format!(
            "http://{}/v1/ratelimit/blocks/198.51.100.77",
            b.admin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    for p in [&a, &c] {
        let back = wait_until(Duration::from_secs(3), || async {
            status_as(p, "198.51.100.77").await == 200
        })
        .await;
        assert!(back.is_some(), "the lift did not reach every proxy");
    }
}

/// A proxy that falls behind the block stream past its trimmed entries
/// (stopped here; cut off from Redis alike) reloads the fleet's live
/// blocks: the block it missed is in force on it, and the one lifted
/// meanwhile is lifted on it too (it once read on from the first entry
/// kept and never learnt either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_behind_a_trimmed_block_stream_reloads_the_live_blocks() {
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let spec = limits_table(be.addr, PER_IP).unwrap();
    let (a, b) = fleet(&wd, &spec, &redis).await;
    let client = reqwest::Client::new();
    let blocks = format!("http://{}/v1/ratelimit/blocks", a.admin);
    let block = |ip: &'static str| {
        let req = client
            .post(&blocks)
            .json(&serde_json::json!({ "ip": ip, "seconds": 300 }))
            .send();
        async move { assert_eq!(req.await.unwrap().status(), 201) }
    };
    block("198.51.100.90").await;
    let seen = wait_until(Duration::from_secs(3), || async {
        status_as(&b, "198.51.100.90").await == 429
    })
    .await;
    assert!(seen.is_some(), "B never saw the first block");

    b.signal("STOP");
    // Meanwhile: .90 lifted, .91 blocked; their entries trimmed away, and
    // one more block after them.
    let lifted = client
        .delete(format!("{blocks}/198.51.100.90"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    block("198.51.100.91").await;
    let stored = wait_until(Duration::from_secs(3), || async {
        in_live_blocks(&redis, "198.51.100.91").await == Some(true)
    })
    .await;
    assert!(stored.is_some(), "A never published the block");
    redis
        .command(&["XTRIM", "edgesteer:blocks", "MAXLEN", "0"])
        .await
        .unwrap();
    block("198.51.100.92").await;
    b.signal("CONT");

    let caught_up = wait_until(Duration::from_secs(5), || async {
        status_as(&b, "198.51.100.91").await == 429
            && status_as(&b, "198.51.100.92").await == 429
            && status_as(&b, "198.51.100.90").await == 200
    })
    .await;
    assert!(caught_up.is_some(), "B did not reload the fleet's blocks");
}
