//! The shared store's faults must not flap `fail_closed` for everyone
//! (issue 33): one client's key of the wrong type in Redis, and one slow
//! command (`CLIENT PAUSE`), each cause no 503 for other clients; the store
//! counts as down only after `STORE_STALE` without a sync.

use std::time::{Duration, Instant};

use edgesteer_tests::*;

use crate::ratelimit::backend;

const CLOSED: &str = r#"
[[rate_limits]]
name = "closed"
key = "client_ip"
scope = "global"
on_store_error = "fail_closed"
tiers = { t = { rate = 1000, burst = 1000 } }
default_tier = "t"
"#;

async fn start(redis: &RedisProc, wd: &Workdir, be: &edgesteer::demo::DemoBackend) -> Proxy {
    let args = vec![
        "--redis".to_string(),
        redis.url(),
        "--redis-sync-ms".into(),
        "50".into(),
    ];
    let spec = limits_table(be.addr, CLOSED).unwrap();
    wd.start_proxy(&spec, true, args).await.unwrap()
}

/// Statuses of requests from `client` (and, between them, from `other`)
/// sent every 20 ms for `how_long`.
async fn traffic(p: &Proxy, client: &str, other: Option<&str>, how_long: Duration) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let start = Instant::now();
    while start.elapsed() < how_long {
        if let Some(o) = other {
            let _ = http
                .get(p.url("/x"))
                .header("x-forwarded-for", o)
                .send()
                .await;
        }
        let r = http
            .get(p.url("/x"))
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    statuses
}

fn refused(statuses: &[u16]) -> usize {
    statuses.iter().filter(|&&s| s == 503).count()
}

/// Waits until the proxy has synced with the store at least once.
async fn synced(p: &Proxy) {
    let ok = wait_until(Duration::from_secs(5), || async {
        let m = p.metrics().await.unwrap_or_default();
        metric_value(&m, "edgesteer_ratelimit_store_up") == 1.0
    })
    .await;
    assert!(ok.is_some(), "the store never came up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wrong_type_key_does_not_fail_closed_for_other_clients() {
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let p = start(&redis, &wd, &be).await;
    synced(&p).await;
    // Client A's key reaches Redis; then it turns into a hash.
    let warm = traffic(&p, "198.51.100.1", None, Duration::from_millis(300)).await;
    assert_eq!(refused(&warm), 0);
    let keys = redis
        .command(&["KEYS", "edgesteer:rl:closed:*"])
        .await
        .unwrap();
    assert_eq!(keys, "*1", "expected one key for client A, got {keys}");
    let listed = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "KEYS",
            "edgesteer:rl:closed:*",
        ])
        .output()
        .unwrap();
    let key = String::from_utf8_lossy(&listed.stdout).trim().to_string();
    assert!(key.starts_with("edgesteer:rl:closed:"), "{key}");
    // In one script: a DEL and an HSET apart left the proxy's next sync
    // time to write the string back in between (HSET then failed).
    assert_eq!(
        redis
            .command(&[
                "EVAL",
                "redis.call('DEL', KEYS[1]); return redis.call('HSET', KEYS[1], 'f', 'v')",
                "1",
                &key,
            ])
            .await
            .unwrap(),
        ":1"
    );

    // A keeps sending (its bad key is in every sync); B must never see 503.
    let b = traffic(
        &p,
        "198.51.100.2",
        Some("198.51.100.1"),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(refused(&b), 0, "client B was refused: {b:?}");
    let m = p.metrics().await.unwrap();
    assert_eq!(metric_value(&m, "edgesteer_ratelimit_store_up"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_command_does_not_fail_closed() {
    // Timed against the store's staleness window: not beside other heavy tests.
    let _heavy = heavy().await;
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let p = start(&redis, &wd, &be).await;
    synced(&p).await;
    let warm = traffic(&p, "198.51.100.3", None, Duration::from_millis(300)).await;
    assert_eq!(refused(&warm), 0);
    // Redis holds every command for 400 ms: longer than the syncer's
    // 250 ms command timeout, shorter than the 1 s staleness rule. A pause
    // can miss the rounds' counting commands: when it catches a round's
    // block-list read, that read times out (not counted as a store error)
    // and the next round's commands wait only the pause's rest. So pause
    // again until a round has failed; no pause may cause a 503.
    let mut failed_rounds = 0.0;
    for attempt in 1..=4 {
        let before = store_errors(&p).await;
        let paused = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "CLIENT", "PAUSE", "400"])
            .output()
            .unwrap();
        assert!(paused.status.success(), "{paused:?}");
        let during = traffic(&p, "198.51.100.3", None, Duration::from_millis(1500)).await;
        assert_eq!(
            refused(&during),
            0,
            "fail_closed flapped (pause {attempt}): {during:?}"
        );
        failed_rounds = store_errors(&p).await - before;
        if failed_rounds >= 1.0 {
            break;
        }
    }
    assert!(
        failed_rounds >= 1.0,
        "four pauses never failed a sync, so this test proved nothing: {}",
        p.metrics().await.unwrap()
    );
}

/// Failed store syncs so far.
async fn store_errors(p: &Proxy) -> f64 {
    let m = p.metrics().await.unwrap();
    metric_value(&m, "edgesteer_ratelimit_store_errors_total")
}

/// The Redis password never reaches the proxy's log, at debug level,
/// through start-up and failed connections (issue 31: the unit test checks
/// `redacted()`, this checks what is written).
#[tokio::test]
async fn redis_credentials_never_reach_the_log() {
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let log = wd.path("proxy.log");
    // Nothing listens there: every sync fails and is logged.
    let url = format!("redis://edge:hunter2-secret@127.0.0.1:{}/0", free_port());
    let p = Proxy::start(ProxyConfig {
        table: wd
            .write_table("t.toml", &limits_table(be.addr, CLOSED).unwrap())
            .unwrap(),
        trust_loopback: true,
        extra_args: vec!["--redis".into(), url, "--redis-sync-ms".into(), "50".into()],
        log: Some(log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // Let a few syncs fail, and the store be reported down.
    let down = wait_until(Duration::from_secs(5), || async {
        let text = p.metrics().await.unwrap();
        metric(&text, "edgesteer_ratelimit_store_errors_total").is_some_and(|n| n >= 3.0)
    })
    .await;
    assert!(down.is_some(), "no failed sync was counted");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("127.0.0.1"),
        "the log says nothing about the store:\n{logged}"
    );
    assert!(
        !logged.contains("hunter2-secret"),
        "the Redis password is in the log"
    );
}
