//! The control plane on etcd (Debian's etcd-server, started by the test on
//! free loopback ports): replicas that share one history, proxies that
//! move to another replica when theirs dies, and writes that need an etcd
//! quorum while reads and proxies do not.

use std::time::Duration;

use edgesteer_control_api::api::PatchRegion;
use edgesteer_tests::*;

fn toggle(i: usize) -> PatchRegion {
    PatchRegion {
        drain: Some(i.is_multiple_of(2)),
        reason: format!("replica test write {i}"),
        ..PatchRegion::default()
    }
}

/// The follow arguments of `proxy`, watching every replica in `urls`.
fn follow_all(
    first: &ControlProc,
    urls: &[String],
    cache: &std::path::Path,
    name: &str,
) -> Vec<String> {
    let mut args = follow(first, cache, name);
    if let Some(i) = args.iter().position(|a| a == "--control") {
        args[i + 1] = urls.join(",");
    }
    args
}

#[tokio::test]
async fn two_replicas_commit_200_alternating_writes_as_one_history() {
    let _heavy = heavy().await;
    let etcd = EtcdCluster::start(1).await.unwrap();
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let store = etcd.store_url("edgesteer-test");
    let a = ControlProc::start_replica(&store, Some(&seed), "a")
        .await
        .unwrap();
    let b = ControlProc::start_replica(&store, None, "b").await.unwrap();
    let (ca, cb) = (a.client(), b.client());
    let mut versions = Vec::new();
    for i in 0..200usize {
        let c = if i.is_multiple_of(2) { &ca } else { &cb };
        let v = c.patch_region("us-west", &toggle(i)).await.unwrap();
        versions.push(v.version);
    }
    let want: Vec<u64> = (2..=201).collect();
    assert_eq!(versions, want, "versions with a gap or a duplicate");
    // Both replicas serve the same history (b follows a's last write).
    assert!(wait_until(Duration::from_secs(3), || async {
        cb.get().await.is_ok_and(|t| t.version == 201)
    })
    .await
    .is_some());
    let ha = ca.history(500).await.unwrap().versions;
    let hb = cb.history(500).await.unwrap().versions;
    assert_eq!(ha.len(), 201);
    assert_eq!(ha, hb, "the replicas disagree on the history");

    // A proxy on each replica: either replica's fleet view shows both.
    let mut proxies = Vec::new();
    for (name, replica) in [("pa", &a), ("pb", &b)] {
        proxies.push(
            Proxy::start(ProxyConfig {
                geo_db: Some(wd.geo_db().unwrap()),
                extra_args: follow(replica, &wd.path(&format!("{name}.json")), name),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    for c in [&ca, &cb] {
        let both = wait_until(Duration::from_secs(5), || async {
            c.fleet().await.is_ok_and(|f| {
                ["pa", "pb"].iter().all(|p| {
                    f.proxies
                        .iter()
                        .any(|e| e.proxy == *p && e.applied_version == Some(201))
                })
            })
        })
        .await;
        assert!(both.is_some(), "fleet view: {:?}", c.fleet().await);
    }
}

#[tokio::test]
async fn a_replica_killed_under_load_loses_no_acked_write_and_no_request() {
    let _heavy = heavy().await;
    let etcd = EtcdCluster::start(1).await.unwrap();
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let store = etcd.store_url("edgesteer-test");
    let mut a = ControlProc::start_replica(&store, Some(&seed), "a")
        .await
        .unwrap();
    let b = ControlProc::start_replica(&store, None, "b").await.unwrap();
    let urls = vec![a.base(), b.base()];
    let mut proxies = Vec::new();
    for name in ["p1", "p2"] {
        proxies.push(
            Proxy::start(ProxyConfig {
                geo_db: Some(wd.geo_db().unwrap()),
                trust_loopback: true,
                extra_args: follow_all(&a, &urls, &wd.path(&format!("{name}.json")), name),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let load = tokio::spawn(send_paced(Pace {
        urls: proxies.iter().map(|p| p.url("/v1/covers")).collect(),
        ips: vec![edgesteer_geo::testdb::sample_ip("US")],
        rate: 200,
        duration: Duration::from_secs(6),
        conns: 8,
        ..Default::default()
    }));
    // Writes through both replicas; a is killed halfway.
    let (ca, cb) = (a.client(), b.client());
    let mut acked = Vec::new();
    let mut refused_after_kill = Vec::new();
    for i in 0..40usize {
        if i == 20 {
            a.kill9();
        }
        let c = if i.is_multiple_of(2) && i < 20 {
            &ca
        } else {
            &cb
        };
        match c.patch_region("us-west", &toggle(i)).await {
            Ok(v) => acked.push(v.version),
            // Every write after the kill goes to the survivor, which must
            // take it.
            Err(e) if i >= 20 => refused_after_kill.push(format!("write {i}: {e}")),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paced = load.await.unwrap();
    assert!(
        paced.other.is_empty(),
        "user requests failed: {:?}",
        paced.other
    );
    assert!(
        refused_after_kill.is_empty(),
        "the surviving replica refused writes: {refused_after_kill:?}"
    );
    // All 20 before the kill were taken too (both replicas were up).
    assert_eq!(acked.len(), 40, "acked: {acked:?}");
    let history: Vec<u64> = cb
        .history(500)
        .await
        .unwrap()
        .versions
        .iter()
        .map(|h| h.version)
        .collect();
    for v in &acked {
        assert!(history.contains(v), "acked version {v} is not in the store");
    }
    let last = *acked.last().unwrap();
    for p in &proxies {
        assert!(
            wait_until(Duration::from_secs(5), || async {
                p.table_version().await == Some(last)
            })
            .await
            .is_some(),
            "a proxy did not converge on version {last} through the surviving replica"
        );
    }
}

#[tokio::test]
async fn writes_need_an_etcd_quorum_reads_and_proxies_do_not() {
    let _heavy = heavy().await;
    let mut etcd = EtcdCluster::start(3).await.unwrap();
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let store = etcd.store_url("edgesteer-test");
    let a = ControlProc::start_replica(&store, Some(&seed), "a")
        .await
        .unwrap();
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&a, &wd.path("p.json"), "p"),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = a.client();
    // One member of three down: writes go on.
    etcd.stop(0);
    let v = c.patch_region("us-west", &toggle(0)).await.unwrap();
    assert_eq!(v.version, 2);
    // Two down: no quorum. A write is refused with a clear 503, nothing
    // changes, the last table is still read, and the proxy serves it.
    etcd.stop(1);
    let err = c.patch_region("us-west", &toggle(1)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("503"), "{text}");
    assert!(text.contains("store"), "{text}");
    assert_eq!(c.get().await.unwrap().version, 2);
    let r = reqwest::get(proxy.url("/v1/covers")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(proxy.table_version().await, Some(2));
}

/// Whether the replica says it runs the rollout controller.
async fn leads(c: &ControlProc) -> bool {
    let req = reqwest::Client::new()
        .get(c.url("/metrics"))
        .bearer_auth(READ_TOKEN)
        .send();
    match req.await {
        Ok(r) => r
            .text()
            .await
            .unwrap_or_default()
            .contains("edgesteer_control_rollout_leader 1"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_leader_dies_mid_rollout_and_another_replica_finishes_it_once() {
    use edgesteer_control_api::api::RolloutCommand;
    let _heavy = heavy().await;
    let etcd = EtcdCluster::start(1).await.unwrap();
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let store = etcd.store_url("edgesteer-test");
    let mut a = ControlProc::start_replica(&store, Some(&seed), "a")
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || leads(&a))
            .await
            .is_some(),
        "the first replica never took the controller lease"
    );
    let b = ControlProc::start_replica(&store, None, "b").await.unwrap();
    let urls = vec![a.base(), b.base()];
    let mut args = follow_all(&a, &urls, &wd.path("p.json"), "p");
    args.extend(["--report-interval-ms".into(), "300".into()]);
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: args,
        ..Default::default()
    })
    .await
    .unwrap();
    // Steady US traffic with many API keys, so both tracks have stats.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = proxy.url("/v1/covers");
    let flag = stop.clone();
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = client
                .get(&url)
                .header(
                    "x-forwarded-for",
                    edgesteer_geo::testdb::sample_ip("US").to_string(),
                )
                .header("x-api-key", format!("user-{}", n % 5000))
                .send()
                .await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let cmd = RolloutCommand {
        reason: "failover test".into(),
        ..crate::rollout::gated(10, &[(2500, 1500), (5000, 1500), (10000, 1500)])
    };
    let api_b = b.client();
    a.client().rollout("us-east", &cmd).await.unwrap();
    // Once a has made the first step, it dies.
    let advanced = wait_until(Duration::from_secs(15), || async {
        api_b.history(20).await.is_ok_and(|h| {
            h.versions
                .iter()
                .any(|v| v.audit.action == "rollout-advance")
        })
    })
    .await;
    assert!(advanced.is_some(), "the leader never advanced the rollout");
    a.kill9();
    let done = wait_until(Duration::from_secs(30), || async {
        api_b.history(20).await.is_ok_and(|h| {
            h.versions
                .iter()
                .any(|v| v.audit.action == "rollout-complete")
        })
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    let history = api_b.history(50).await.unwrap().versions;
    let rollout: Vec<(String, String)> = history
        .iter()
        .rev()
        .filter(|v| v.audit.action.starts_with("rollout-"))
        .map(|v| (v.audit.action.clone(), v.audit.actor.clone()))
        .collect();
    assert!(done.is_some(), "the rollout did not complete: {rollout:?}");
    let actions: Vec<&str> = rollout.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "rollout-start",
            "rollout-advance",
            "rollout-advance",
            "rollout-complete"
        ],
        "each step exactly once: {rollout:?}"
    );
    assert!(
        rollout.iter().any(|(_, actor)| actor == "rollout@b"),
        "the second replica made no decision: {rollout:?}"
    );
}
