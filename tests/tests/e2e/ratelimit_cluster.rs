//! Fleet-wide limits on a real Redis Cluster (three masters, three
//! replicas, `cluster-node-timeout 1000`): three proxies share per-key
//! limits over keys on every master; a master killed with SIGKILL under
//! load fails over to its replica (fail_open keys never fail, fail_closed
//! keys answer 503 only for the lost slots and only until the promotion is
//! seen) and rejoins as a replica without any proxy restart
//! (`ratelimit_cluster_slots`: unserved slots; `ratelimit_tls`: TLS). Each
//! proxy's per-node series (`edgesteer_ratelimit_redis_node_*`) follow.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use edgesteer_tests::redis_cluster::{
    besides, count, drive, node_up, when, ClusterOptions, ClusterProxy, RedisCluster, Stream,
    PASSWORD_ENV,
};
use edgesteer_tests::*;
use serde_json::Value;

use crate::ratelimit::backend;

const SYNC: f64 = 0.05;

/// global.rs: with N proxies the fleet admits at most
/// rate x W + burst + (N - 1) x (burst + rate x (2 x interval + rtt));
/// we allow 50 ms of round trip.
fn bound(rate: f64, burst: f64, w: f64, proxies: f64) -> f64 {
    rate * w + burst + (proxies - 1.0) * (burst + rate * (2.0 * SYNC + 0.05))
}

pub(crate) async fn store_up(p: &ClusterProxy) -> Option<bool> {
    p.store().await.ok()?["up"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_share_per_key_limits_over_every_master() {
    let _heavy = heavy().await;
    let secret = "cluster-secret-7f3a";
    let cluster = RedisCluster::start(ClusterOptions {
        password: Some(secret.into()),
        full_coverage: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i:02}")).collect();
    let listed: Vec<String> = keys.iter().map(|k| format!("\"{k}\" = \"t\"")).collect();
    let spec = limits_table(
        be.addr,
        &format!(
            "[[rate_limits]]\nname = \"fleet\"\nkey = \"header:x-api-key\"\nscope = \"global\"\n\
             tiers = {{ t = {{ rate = 2, burst = 2 }} }}\nkeys = {{ {} }}\n",
            listed.join(", ")
        ),
    )
    .unwrap();
    let env = [(PASSWORD_ENV, secret)];
    let fleet = ClusterProxy::fleet(3, &wd, &spec, &cluster.url(), &env)
        .await
        .unwrap();
    let synced = wait_until(Duration::from_secs(5), || async {
        let mut all = true;
        for p in &fleet {
            let s = p.store().await.unwrap_or_default();
            all &= s["cluster"]["masters"] == 3 && s["syncs"].as_u64() > Some(0);
        }
        all
    })
    .await;
    assert!(synced.is_some(), "{}", fleet[0].store().await.unwrap());

    // 3x each key's rate, every key through all three proxies in turn.
    let urls: Vec<String> = fleet.iter().map(|p| p.url("")).collect();
    let streams = keys
        .iter()
        .map(|k| Stream(k.clone(), "/x".into()))
        .collect();
    let dur = 5.0;
    let trace = drive(urls, streams, 6.0, dur, Instant::now()).await;
    let (exact, limit) = (2.0 * dur + 2.0, bound(2.0, 2.0, dur, 3.0));
    let mut total = 0;
    for (k, t) in keys.iter().zip(&trace) {
        let ok = count(t, 200, 0.0);
        let other = besides(t, &[200, 429]);
        assert!(other.is_empty(), "{k}: {other:?}");
        assert!(
            ok as f64 <= limit,
            "{k}: the fleet admitted {ok}, over the documented bound {limit:.1} (exact {exact})"
        );
        total += ok;
    }
    let want = exact * keys.len() as f64;
    eprintln!("cluster fleet: admitted {total} of an exact {want} over 60 keys (bound per key {limit:.1})");
    assert!(
        total as f64 >= 0.85 * want,
        "admitted only {total} of {want}"
    );

    // The keys landed on every master; the proxies see the whole cluster.
    for m in cluster.masters().await.unwrap() {
        let n = cluster.cli(m.port, &["DBSIZE"]).await.unwrap();
        assert_ne!(n.trim(), "0", "master {} holds no limit key", m.port);
    }
    for p in &fleet {
        let s = p.store().await.unwrap();
        let c = &s["cluster"];
        assert_eq!(s["up"], true, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
        assert_eq!(c["slots_covered"], 16384, "{s}");
        assert_eq!(c["slots_unserved"], serde_json::json!([]), "{s}");
        assert_eq!(c["buckets_down"], 0, "{s}");
        let nodes = c["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 6, "{s}");
        let masters: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "master").collect();
        assert_eq!(masters.len(), 3, "{s}");
        for m in masters {
            assert_eq!(m["up"], true, "{s}");
            assert!(m["sync_ms"].as_f64().is_some(), "{s}");
        }
        for r in nodes.iter().filter(|n| n["role"] == "replica") {
            assert!(r["replica_of"].as_str().is_some(), "{s}");
        }
        assert!(!s.to_string().contains(secret));
        // The same per node in /metrics: every master and replica up.
        let m = p.metrics().await.unwrap();
        for n in cluster.masters().await.unwrap() {
            assert_eq!(metric_value(&m, &node_up(n.port, "master")), 1.0, "{m}");
        }
        assert_eq!(m.matches("_redis_node_up{").count(), 6, "{m}");
        assert_eq!(m.matches("role=\"replica\"} 1").count(), 3, "{m}");
    }

    // The block list goes through the cluster too, readable from any node.
    let http = reqwest::Client::new();
    let added = http
        .post(format!("http://{}/v1/ratelimit/blocks", fleet[0].admin))
        .json(&serde_json::json!({ "ip": "198.51.100.90", "seconds": 300 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let status_on_c = || async {
        http.get(fleet[2].url("/x"))
            .header("x-forwarded-for", "198.51.100.90")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let shared = wait_until(Duration::from_secs(3), || async {
        status_on_c().await == 429
    })
    .await;
    assert!(shared.is_some(), "the third proxy never saw the block");
    for port in cluster.running() {
        let n = cluster
            .cli(port, &["-c", "XLEN", "{edgesteer:blocks}"])
            .await
            .unwrap();
        assert_eq!(n.trim(), "1", "node {port}");
    }

    // A proxy with the wrong password says what to fix, and no secret.
    let wrong = ClusterProxy::start(&wd, &spec, &cluster.url(), &[(PASSWORD_ENV, "not-it")])
        .await
        .unwrap();
    let told = wait_until(Duration::from_secs(3), || async {
        wrong.store().await.unwrap_or_default()["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("EDGESTEER_REDIS_PASSWORD"))
    })
    .await;
    let s = wrong.store().await.unwrap();
    assert!(told.is_some(), "{s}");
    assert!(!s.to_string().contains("not-it"), "{s}");
    for p in fleet.iter().chain([&wrong]) {
        let log = p.log_text();
        assert!(!log.contains(secret) && !log.contains("not-it"), "{log}");
    }
}

/// A global policy `name` on API key `key` for paths under `/name/`.
pub(crate) fn policy(name: &str, mode: &str, rate: u32, burst: u32, key: &str) -> String {
    format!(
        "[[rate_limits]]\nname = \"{name}\"\nkey = \"header:x-api-key\"\nscope = \"global\"\n\
         on_store_error = \"{mode}\"\npath_prefixes = [\"/{name}/\"]\n\
         tiers = {{ t = {{ rate = {rate}, burst = {burst} }} }}\nkeys = {{ \"{key}\" = \"t\" }}\n"
    )
}

/// `o{i}` fail_open at 10/s, `c{i}` fail_closed (a limit never reached),
/// both on API key `k{i}`: one policy per key, so the store's key names
/// tell which master holds which key.
fn failover_table(keys: usize) -> String {
    (0..keys)
        .map(|i| {
            let (o, c, k) = (format!("o{i}"), format!("c{i}"), format!("k{i}"));
            policy(&o, "fail_open", 10, 5, &k) + &policy(&c, "fail_closed", 1000, 1000, &k)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_and_rejoins_without_a_proxy_restart() {
    let _heavy = heavy().await;
    let mut cluster = RedisCluster::start(ClusterOptions::default())
        .await
        .unwrap();
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    const KEYS: usize = 12;
    let spec = limits_table(be.addr, &failover_table(KEYS)).unwrap();
    let fleet = ClusterProxy::fleet(3, &wd, &spec, &cluster.url(), &[])
        .await
        .unwrap();
    let urls: Vec<String> = fleet.iter().map(|p| p.url("")).collect();
    let streams = |p: &str| -> Vec<Stream> {
        (0..KEYS)
            .map(|i| Stream(format!("k{i}"), format!("/{p}{i}/x")))
            .collect()
    };
    // Every key at 2x its fail_open rate, and 5/s on its fail_closed policy.
    let dur = 10.0;
    let start = Instant::now();
    let open = tokio::spawn(drive(urls.clone(), streams("o"), 20.0, dur, start));
    let closed = tokio::spawn(drive(urls, streams("c"), 5.0, dur, start));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held: std::collections::BTreeMap<usize, u16> = cluster
        .holders()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(name, port)| Some((name.strip_prefix('o')?.parse().ok()?, port)))
        .collect();
    assert_eq!(
        held.len(),
        KEYS,
        "not every key reached the cluster: {held:?}"
    );
    let masters = cluster.masters().await.unwrap();
    let victim = masters
        .iter()
        .max_by_key(|m| held.values().filter(|&&p| p == m.port).count())
        .unwrap()
        .clone();
    let lost: BTreeSet<usize> = held
        .iter()
        .filter(|(_, &p)| p == victim.port)
        .map(|(&i, _)| i)
        .collect();
    let survivor = masters.iter().find(|m| m.port != victim.port).unwrap().port;
    cluster.kill(victim.port);
    let killed = start.elapsed().as_secs_f64();

    // The proxies notice: only the lost master's buckets go down.
    let down = when(start, Duration::from_secs(5), || async {
        store_up(&fleet[0]).await == Some(false)
    })
    .await;
    assert!(down.is_some(), "the lost master was never noticed");
    let seen = fleet[0].store().await.unwrap();
    let buckets_down = seen["cluster"]["buckets_down"].as_u64().unwrap();
    assert!(
        (40..=130).contains(&buckets_down),
        "{buckets_down} of 256 buckets down: {seen}"
    );
    let victim_addr = format!("127.0.0.1:{}", victim.port);
    let nodes = seen["cluster"]["nodes"].as_array().unwrap();
    let node = nodes.iter().find(|n| n["addr"] == victim_addr.as_str());
    assert!(
        node.is_some_and(|n| n["up"] == false || n["failed"] == true),
        "{seen}"
    );
    let m = fleet[0].metrics().await.unwrap();
    assert_eq!(
        metric_value(&m, &node_up(victim.port, "master")),
        0.0,
        "{m}"
    );

    // Promotion, then every proxy back within a few sync intervals.
    let promoted = when(start, Duration::from_secs(15), || async {
        cluster
            .cluster_nodes(survivor)
            .await
            .unwrap_or_default()
            .iter()
            .any(|n| n.port != victim.port && n.master && !n.failed && n.slots == victim.slots)
    })
    .await
    .expect("the replica was not promoted");
    // The three polled at once: one after another, the later ones' times
    // held the earlier ones' admin round trips too.
    let up = |p| {
        when(start, Duration::from_secs(5), move || async move {
            store_up(p).await == Some(true)
        })
    };
    let (a, b, c) = tokio::join!(up(&fleet[0]), up(&fleet[1]), up(&fleet[2]));
    let mut resumed = promoted;
    for t in [a, b, c] {
        resumed = resumed.max(t.expect("a proxy did not resume after the promotion"));
    }
    let intervals = ((resumed - promoted) / SYNC).ceil();
    eprintln!(
        "failover: killed at {killed:.2} s, noticed {:.2} s, promoted {promoted:.2} s, all proxies resumed {resumed:.2} s ({intervals} sync intervals after the promotion); {} of {KEYS} keys on the lost master",
        down.unwrap_or(0.0),
        lost.len()
    );
    assert!(
        intervals <= 6.0,
        "resumed {intervals} sync intervals after the promotion"
    );

    let open = open.await.unwrap();
    let closed = closed.await.unwrap();
    let mut refused = Vec::new();
    for i in 0..KEYS {
        // fail_open: nothing fails, ever.
        let failed = besides(&open[i], &[200, 429]);
        assert!(failed.is_empty(), "o{i}: {failed:?}");
        // fail_closed: 503 only for keys on the lost master, only in the window.
        let bad = besides(&closed[i], &[200, 503]);
        assert!(bad.is_empty(), "c{i}: {bad:?}");
        let times: Vec<f64> = closed[i]
            .iter()
            .filter(|(_, s)| *s == 503)
            .map(|(t, _)| *t)
            .collect();
        if !lost.contains(&i) {
            assert!(
                times.is_empty(),
                "c{i} is not on the lost master but got 503 at {times:?}"
            );
            // Its fail_open twin stayed fleet-limited all along.
            let ok = count(&open[i], 200, 0.0) as f64;
            assert!(
                ok <= bound(10.0, 5.0, dur, 3.0),
                "o{i} admitted {ok} with its master up"
            );
        }
        for t in &times {
            assert!(
                *t >= killed + 0.9 && *t <= resumed + 0.3,
                "c{i}: 503 at {t:.2} s, outside the window {killed:.2}+1 s .. {resumed:.2} s"
            );
        }
        refused.extend(times);
    }
    assert!(
        !refused.is_empty(),
        "no fail_closed key of the lost master got 503"
    );
    let first = refused.iter().cloned().fold(f64::MAX, f64::min);
    let last = refused.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "fail_closed: {} answers 503 from {first:.2} s to {last:.2} s",
        refused.len()
    );
    // Keys of the lost master: fleet-limited again once resumed.
    let w = dur - resumed;
    assert!(w >= 1.5, "too little load left after recovery ({w:.2} s)");
    for &i in &lost {
        let ok = count(&open[i], 200, resumed) as f64;
        let limit = bound(10.0, 5.0, w, 3.0);
        assert!(
            ok <= limit,
            "o{i} admitted {ok} in the {w:.2} s after recovery, over {limit:.1}"
        );
    }

    // The killed node, restarted from its config file, rejoins as a
    // replica of its promoted replica; the proxies follow, untouched.
    cluster.restart(victim.port).await.unwrap();
    let new_master = cluster
        .masters()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.slots == victim.slots)
        .unwrap();
    let rejoined = wait_until(Duration::from_secs(10), || async {
        cluster
            .cluster_nodes(survivor)
            .await
            .unwrap_or_default()
            .iter()
            .any(|n| {
                n.port == victim.port
                    && !n.master
                    && n.master_id.as_deref() == Some(&new_master.id)
                    && n.connected
            })
    })
    .await;
    assert!(
        rejoined.is_some(),
        "the restarted node did not rejoin as a replica"
    );
    let new_addr = format!("127.0.0.1:{}", new_master.port);
    for p in &fleet {
        let follows = wait_until(Duration::from_secs(5), || async {
            let s = p.store().await.unwrap_or_default();
            s["up"] == true
                && s["cluster"]["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| {
                        n["addr"] == victim_addr.as_str()
                            && n["role"] == "replica"
                            && n["replica_of"] == new_addr.as_str()
                    })
        })
        .await;
        assert!(follows.is_some(), "{}", p.store().await.unwrap());
    }
}
