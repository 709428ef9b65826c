//! A Redis Cluster with slots that no master serves (on a real cluster):
//! the proxy reports them, fail_open keys run on local limits,
//! fail_closed keys answer 503, and it all comes back by itself once the
//! slots are assigned again.

use std::time::{Duration, Instant};

use edgesteer_tests::redis_cluster::{
    count, drive, ClusterOptions, ClusterProxy, RedisCluster, Stream,
};
use edgesteer_tests::*;
use serde_json::Value;

use crate::ratelimit::backend;
use crate::ratelimit_cluster::{policy, store_up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_slots_are_reported_and_the_proxy_keeps_serving() {
    let _heavy = heavy().await;
    let cluster = RedisCluster::start(ClusterOptions {
        password: None,
        full_coverage: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    // Slots 0-99 belong to nobody, on every node: the cluster is down.
    let owner = cluster
        .masters()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.slots[0].0 == 0)
        .unwrap();
    for port in cluster.running() {
        let r = cluster
            .cli(port, &["CLUSTER", "DELSLOTSRANGE", "0", "99"])
            .await
            .unwrap();
        assert_eq!(r.trim(), "OK", "node {port}");
    }
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let table = policy("open", "fail_open", 20, 5, "k1")
        + &policy("closed", "fail_closed", 1000, 1000, "k1");
    let spec = limits_table(be.addr, &table).unwrap();
    let p = ClusterProxy::start(&wd, &spec, &cluster.url(), &[])
        .await
        .unwrap();
    let down = wait_until(Duration::from_secs(5), || async {
        store_up(&p).await == Some(false)
    })
    .await;
    let s = p.store().await.unwrap();
    assert!(down.is_some(), "{s}");
    assert_eq!(
        s["cluster"]["slots_unserved"],
        serde_json::json!(["0-99"]),
        "{s}"
    );
    assert_eq!(s["cluster"]["slots_covered"], 16284, "{s}");
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("slots 0-99 are served by no live master")
            && error.contains("redis-cli --cluster fix"),
        "{s}"
    );
    let log = p.log_text();
    assert!(
        log.contains("slots 0-99 are served by no live master"),
        "{log}"
    );

    // fail_open on the local limit; fail_closed refuses.
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(p.url(path)).header("x-api-key", "k1").send();
    let closed = get("/closed/").await.unwrap();
    assert_eq!(closed.status(), 503);
    let body: Value = closed.json().await.unwrap();
    assert_eq!(body["error"], "rate_limit_store_unavailable");
    let run = drive(
        vec![p.url("")],
        vec![Stream("k1".into(), "/open/".into())],
        40.0,
        2.0,
        Instant::now(),
    )
    .await;
    let ok = count(&run[0], 200, 0.0) as f64;
    let refused = count(&run[0], 429, 0.0);
    assert_eq!(ok as usize + refused, run[0].len(), "{:?}", run[0]);
    let local = 20.0 * 2.0 + 5.0;
    assert!(
        (ok - local).abs() <= local * 0.1,
        "fail_open admitted {ok}, its local limit is {local}"
    );

    // The slots assigned again: back without a restart.
    let r = cluster
        .cli(owner.port, &["CLUSTER", "ADDSLOTSRANGE", "0", "99"])
        .await
        .unwrap();
    assert_eq!(r.trim(), "OK");
    let up = wait_until(Duration::from_secs(10), || async {
        store_up(&p).await == Some(true)
    })
    .await;
    assert!(up.is_some(), "{}", p.store().await.unwrap());
    assert_eq!(get("/closed/").await.unwrap().status(), 200);
}
