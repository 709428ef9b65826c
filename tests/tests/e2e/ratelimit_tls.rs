//! TLS to the rate-limit store (issue 28) and the per-node series of a
//! Redis Cluster store (issue 33), on real `redis-server`s that have only a
//! TLS port: two proxies share a global limit through `rediss://` with a
//! client certificate (the server checks clients); a proxy given the wrong
//! CA reports the TLS error in `/v1/ratelimit` and keeps serving; bad TLS
//! files stop the proxy at start; a proxy on a TLS cluster
//! (`rediss+cluster://`, CA from the environment) syncs with every master
//! and shows each one up in `/metrics`.

use std::process::Command;
use std::time::Duration;

use edgesteer_tests::redis_cluster::{node_up, ClusterOptions, ClusterProxy, RedisCluster};
use edgesteer_tests::*;

use crate::ratelimit::{backend, expected, one_client};
use crate::ratelimit_fleet::fleet_bound;

const FLEET: &str = r#"
[[rate_limits]]
name = "fleet"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_open"
tiers = { t = { rate = 50, burst = 5 } }
keys = { "fleet-key" = "t" }
"#;

/// `--redis URL --redis-sync-ms 50 --redis-ca CA`, and the client
/// certificate when `client` holds.
fn redis_args(
    redis: &RedisProc,
    ca: &std::path::Path,
    pki: &RedisPki,
    client: bool,
) -> Vec<String> {
    let mut args = vec![
        "--redis".to_string(),
        redis.url(),
        "--redis-sync-ms".into(),
        "50".into(),
        "--redis-ca".into(),
        ca.display().to_string(),
    ];
    if client {
        for (flag, p) in [
            ("--redis-cert", &pki.client_cert),
            ("--redis-key", &pki.client_key),
        ] {
            args.extend([flag.to_string(), p.display().to_string()]);
        }
    }
    args
}

async fn store(p: &Proxy) -> serde_json::Value {
    let url = format!("http://{}/v1/ratelimit", p.admin);
    let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    v["store"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_a_global_limit_through_a_tls_redis() {
    // Paced load: not beside other heavy tests (2 cores).
    let _heavy = heavy().await;
    let pki = RedisPki::new().unwrap();
    let redis = RedisProc::start_tls(pki.server(true)).await.unwrap();
    assert!(redis.url().starts_with("rediss://"));
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let spec = limits_table(be.addr, FLEET).unwrap();
    let args = redis_args(&redis, &pki.ca, &pki, true);
    let a = wd.start_proxy(&spec, true, args.clone()).await.unwrap();
    let b = wd.start_proxy(&spec, true, args).await.unwrap();
    for p in [&a, &b] {
        let up = wait_until(Duration::from_secs(5), || async {
            let m = p.metrics().await.unwrap_or_default();
            metric(&m, "edgesteer_ratelimit_store_syncs_total").is_some_and(|n| n > 0.0)
        })
        .await;
        assert!(up.is_some(), "no sync over TLS: {}", store(p).await);
    }

    // 2x the fleet rate, alternating: each proxy alone would admit its
    // half (the local rate), so the total tells whether they share.
    let run = send_paced(one_client(
        vec![a.url("/x"), b.url("/x")],
        "198.51.100.7",
        "fleet-key",
        100,
        2,
        4,
    ))
    .await;
    assert!(run.other.is_empty(), "{:?}", run.other);
    let (got, exact, bound) = (
        run.ok as f64,
        expected(50, 5, &run),
        fleet_bound(50, 5, &run),
    );
    eprintln!(
        "tls fleet: admitted {got} (exact {exact:.0}, bound {bound:.0}) over {:?}",
        run.elapsed
    );
    assert!(
        got <= bound,
        "admitted {got}, over the fleet bound {bound:.0}: not shared"
    );
    assert!(got >= exact * 0.9, "admitted only {got} of {exact:.0}");
    // The counts are in that Redis, and both proxies say it is up.
    let keys = redis.cli(&["KEYS", "edgesteer:rl:fleet:*"]).await.unwrap();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    for p in [&a, &b] {
        let m = p.metrics().await.unwrap();
        assert_eq!(metric_value(&m, "edgesteer_ratelimit_store_up"), 1.0);
        assert_eq!(
            metric_value(&m, "edgesteer_ratelimit_store_errors_total"),
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_no_client_certificate_is_a_clear_store_error() {
    let pki = RedisPki::new().unwrap();
    let redis = RedisProc::start_tls(pki.server(true)).await.unwrap();
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let spec = limits_table(be.addr, FLEET).unwrap();
    let wrong_ca = wd
        .start_proxy(&spec, true, redis_args(&redis, &pki.other_ca, &pki, true))
        .await
        .unwrap();
    let no_cert = wd
        .start_proxy(&spec, true, redis_args(&redis, &pki.ca, &pki, false))
        .await
        .unwrap();
    for (p, want) in [(&wrong_ca, "--redis-ca"), (&no_cert, "--redis-cert")] {
        let down = wait_until(Duration::from_secs(5), || async {
            let s = store(p).await;
            s["up"] == false && s["last_error"].as_str().is_some_and(|e| e.contains(want))
        })
        .await;
        let s = store(p).await;
        assert!(down.is_some(), "expected a TLS error naming {want}: {s}");
        let error = s["last_error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&redis.url()) && error.contains("TLS"),
            "{s}"
        );
        // fail_open: still serving, on local limits.
        let r = reqwest::Client::new()
            .get(p.url("/x"))
            .header("x-api-key", "fleet-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let m = wrong_ca.metrics().await.unwrap();
    assert_eq!(metric_value(&m, "edgesteer_ratelimit_store_up"), 0.0);
    assert_eq!(
        metric_value(&m, "edgesteer_ratelimit_store_syncs_total"),
        0.0
    );
}

/// `edgesteer proxy ARGS`: exit code and stderr (it stops before serving).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .arg("proxy")
        .args(args)
        .env_remove("EDGESTEER_REDIS")
        .env_remove("EDGESTEER_REDIS_CA")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_tls_settings_stop_the_proxy_with_the_flag_named() {
    let url = "rediss://:Hunter2-4711@127.0.0.1:1";
    for (args, want) in [
        (
            vec!["--redis", url, "--redis-ca", "/dev/zero"],
            "--redis-ca /dev/zero: is a character device",
        ),
        (
            vec!["--redis", url, "--redis-ca", "/nonexistent.pem"],
            "--redis-ca /nonexistent.pem: cannot read",
        ),
        (
            vec!["--redis", "redis://127.0.0.1:1", "--redis-ca", "/dev/null"],
            "not a rediss://",
        ),
        (
            vec!["--redis", "rediss://127.0.0.1:1/#insecure"],
            "#insecure",
        ),
        (vec!["--redis-ca", "/dev/null"], "give --redis rediss://"),
    ] {
        let (code, text) = refused(&args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(text.contains(want), "{args:?}: wanted {want:?} in\n{text}");
        assert!(!text.contains("Hunter2-4711"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_syncs_with_a_tls_cluster_and_shows_every_master_up() {
    let pki = RedisPki::new().unwrap();
    let cluster = RedisCluster::start(ClusterOptions {
        tls: Some(pki.server(false)),
        masters_only: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    assert!(cluster.url().starts_with("rediss+cluster://"));
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let spec = limits_table(be.addr, FLEET).unwrap();
    let ca = pki.ca.display().to_string();
    let p = ClusterProxy::start(&wd, &spec, &cluster.url(), &[("EDGESTEER_REDIS_CA", &ca)])
        .await
        .unwrap();
    let masters = cluster.masters().await.unwrap();
    assert_eq!(masters.len(), 3);
    let all_up = |m: &str| {
        masters
            .iter()
            .all(|n| metric(m, &node_up(n.port, "master")) == Some(1.0))
    };
    let synced = wait_until(Duration::from_secs(5), || async {
        let s = p.store().await.unwrap_or_default();
        s["up"] == true
            && s["syncs"].as_u64() > Some(0)
            && all_up(&p.metrics().await.unwrap_or_default())
    })
    .await;
    let m = p.metrics().await.unwrap();
    assert!(synced.is_some(), "{}\n{m}", p.store().await.unwrap());
    for n in &masters {
        let node = format!("{{node=\"127.0.0.1:{}\"}}", n.port);
        assert_eq!(metric_value(&m, &node_up(n.port, "master")), 1.0, "{m}");
        let took = metric_value(
            &m,
            &format!("edgesteer_ratelimit_redis_node_sync_seconds{node}"),
        );
        assert!((0.0..0.25).contains(&took), "{took} s to {}", n.port);
        assert_eq!(
            metric_value(
                &m,
                &format!("edgesteer_ratelimit_redis_node_errors_total{node}")
            ),
            0.0
        );
    }
    assert_eq!(
        m.matches("edgesteer_ratelimit_redis_node_up{").count(),
        3,
        "{m}"
    );
    // Counted keys reach the cluster over TLS.
    let r = reqwest::Client::new()
        .get(p.url("/x"))
        .header("x-api-key", "fleet-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let landed = wait_until(Duration::from_secs(3), || async {
        let mut n = 0;
        for m in &masters {
            let size = cluster.cli(m.port, &["DBSIZE"]).await.unwrap_or_default();
            n += size.trim().parse::<u64>().unwrap_or(0);
        }
        n > 0
    })
    .await;
    assert!(landed.is_some(), "no limit key reached the TLS cluster");
}
