//! The config service and live reload: pushes under load, propagation,
//! outages and rollback, with real processes (bad writes are in
//! `control_writes`, which uses the setup here).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgesteer::demo::DemoBackend;
use edgesteer_config::TableSpec;
use edgesteer_control_api::api::PatchRegion;
use edgesteer_tests::*;

pub(crate) struct Setup {
    wd: Workdir,
    pub(crate) spec: TableSpec,
    _backends: Vec<DemoBackend>,
    pub(crate) control: ControlProc,
}

pub(crate) async fn setup(extra: &[&str]) -> Setup {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let data = wd.path("control-data");
    let control = ControlProc::start(&data, Some(&seed), extra).await.unwrap();
    Setup {
        wd,
        spec,
        _backends: backends,
        control,
    }
}

impl Setup {
    pub(crate) async fn proxy(&self, name: &str) -> Proxy {
        self.wd.follower(&self.control, name).await.unwrap()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test]
async fn a_hundred_pushes_under_load_drop_nothing() {
    let _heavy = heavy().await;
    let s = setup(&[]).await;
    let proxies = [s.proxy("p1").await, s.proxy("p2").await];
    let api = s.control.client();
    let east: Vec<String> = s.spec.regions["us-east"]
        .backends
        .iter()
        .map(|b| b.address.clone())
        .collect();

    // Version -> when its write was sent (version 1 is the seed).
    let committed: Arc<Mutex<BTreeMap<u64, Instant>>> =
        Arc::new(Mutex::new(BTreeMap::from([(1, Instant::now())])));
    let start = Instant::now();
    let run_for = Duration::from_secs(20);

    // Load: 300 requests/s over both proxies from US, AP and DE clients.
    let clients = [
        sample_ip("US"),
        sample_ip("SG"),
        sample_ip("DE"),
        sample_ip("JP"),
    ];
    let mut load = Vec::new();
    for (i, p) in proxies.iter().enumerate() {
        for c in 0..3 {
            let url = p.url("/v1/covers");
            let ip = clients[(i * 3 + c) % clients.len()];
            load.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut seen = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(20)); // 50/s per task
                while start.elapsed() < run_for {
                    tick.tick().await;
                    let t0 = Instant::now();
                    let r = http
                        .get(&url)
                        .header("x-forwarded-for", ip.to_string())
                        .send()
                        .await;
                    let t1 = Instant::now();
                    let r = r.map(|r| {
                        (
                            r.status().as_u16(),
                            r.headers()
                                .get("x-steer-version")
                                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok()),
                        )
                    });
                    seen.push((t0, t1, r.map_err(|e| e.to_string())));
                }
                seen
            }));
        }
    }

    // 100 changes: move us-east weight back and forth and drain/undrain ap-southeast.
    let mut propagation = Vec::new();
    // Version -> how long after its write was sent both proxies reported it.
    let mut applied = BTreeMap::new();
    // Version -> when the config service answered its write: the latest
    // moment it can have been committed (a durable write takes a while on
    // a loaded disk, and no proxy can have it before it is committed).
    let mut answered: BTreeMap<u64, Instant> = BTreeMap::new();
    // Version -> the moment every proxy's admin had reported it: from
    // then on no new request may be served anything older.
    let mut everywhere: BTreeMap<u64, Instant> = BTreeMap::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..100u32 {
        let change = if i % 2 == 0 {
            let (a, b) = if i % 4 == 0 { (0, 1) } else { (1, 0) };
            PatchRegion {
                weights: BTreeMap::from([(east[0].clone(), a), (east[1].clone(), b)]),
                reason: format!("push {i}"),
                ..PatchRegion::default()
            }
        } else {
            PatchRegion {
                drain: Some(i % 4 == 1),
                reason: format!("push {i}"),
                ..PatchRegion::default()
            }
        };
        let region = if i % 2 == 0 {
            "us-east"
        } else {
            "ap-southeast"
        };
        // The write happens between `sent` and the PATCH's answer: a proxy
        // may serve the new version before the answer reaches us (so no
        // version may be served before its `sent`), and cannot serve it
        // before it is committed (so the old one is judged stale from the
        // answer on).
        let sent = Instant::now();
        let v = api.patch_region(region, &change).await.unwrap();
        let wrote = Instant::now();
        committed.lock().unwrap().insert(v.version, sent);
        answered.insert(v.version, wrote);
        // Propagation: until both proxies report the version.
        loop {
            let mut all = true;
            for p in &proxies {
                all &= p.table_version().await.is_some_and(|pv| pv >= v.version);
            }
            if all {
                everywhere.insert(v.version, Instant::now());
                applied.insert(v.version, sent.elapsed());
                propagation.push(wrote.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                wrote.elapsed() < Duration::from_secs(5),
                "version {} not applied by every proxy in 5 s",
                v.version
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let mut total = 0;
    let committed = committed.lock().unwrap().clone();
    for task in load {
        for (t0, t1, r) in task.await.unwrap() {
            total += 1;
            let (status, version) = r.unwrap_or_else(|e| panic!("request failed: {e}"));
            assert_eq!(status, 200, "a request failed during pushes");
            let v = version.expect("X-Steer-Version on every response");
            // The version was live while the request ran: committed before it
            // ended (its write sent before the request's answer) ...
            let at = committed
                .get(&v)
                .unwrap_or_else(|| panic!("unknown version {v}"));
            assert!(*at <= t1, "version {v} served before it was written");
            // ... and not superseded before it started: once every proxy
            // reported the next version, no request that starts later is
            // served this one (an event, not a time window).
            if let Some(next) = everywhere.get(&(v + 1)) {
                assert!(
                    t0 <= *next,
                    "version {v} served to a request that started {:?} after every proxy reported v{} (its write answered at {:?}, applied {:?} after sent)",
                    t0 - *next,
                    v + 1,
                    answered.get(&(v + 1)),
                    applied.get(&(v + 1))
                );
            }
        }
    }
    assert!(total > 5000, "only {total} requests");
    propagation.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (
        percentile(&propagation, 0.5),
        percentile(&propagation, 0.99),
    );
    eprintln!("propagation over {} writes: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms; {total} requests, 0 failed", propagation.len(), propagation.last().unwrap_or(&0.0));
    let fleet = api.fleet().await.unwrap();
    let names: Vec<&str> = fleet.proxies.iter().map(|p| p.proxy.as_str()).collect();
    assert_eq!(names, ["p1", "p2"]);
    assert!(
        fleet.proxies.iter().all(|p| p.applied_version == Some(101)),
        "{fleet:?}"
    );
}

#[tokio::test]
async fn proxies_survive_the_service_and_history_survives_kill_9() {
    let mut s = setup(&[]).await;
    let p1 = s.proxy("p1").await;
    let api = s.control.client();
    let v = api
        .patch_region(
            "us-east",
            &PatchRegion {
                drain: Some(true),
                reason: "move US to us-west".into(),
                ..PatchRegion::default()
            },
        )
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(3), || async {
        p1.table_version().await == Some(v.version)
    })
    .await
    .is_some());

    // Writes racing a kill -9: every acknowledged version must survive.
    let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let api = s.control.client();
        let east = s.spec.regions["us-east"].backends[0].address.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            // Weights 2, 3, 1, 2, ...: each write changes the table (the
            // current weight again would be 400 empty_change).
            for i in 1..1000u32 {
                let change = PatchRegion {
                    weights: BTreeMap::from([(east.clone(), i % 3 + 1)]),
                    ..PatchRegion::default()
                };
                match api.patch_region("us-east", &change).await {
                    Ok(v) => {
                        acked.push(v.version);
                        acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            acked
        })
    };
    // Killed mid-stream, once a few writes are durable (each is fsynced:
    // on a loaded disk the first took longer than a fixed 300 ms).
    let writing = wait_until(Duration::from_secs(10), || async {
        acks.load(std::sync::atomic::Ordering::Relaxed) >= 3
    })
    .await;
    assert!(writing.is_some(), "no write was acknowledged in 10 s");
    s.control.kill9();
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());

    // The proxy keeps serving (with the drain in force) while the service is down.
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let got = get_as(&client, &p1.url("/"), sample_ip("US"), None)
            .await
            .unwrap();
        assert_eq!((got.status, got.region()), (200, "us-west"));
    }
    // A proxy restarted while the service is down serves its cached table.
    // The cache is written off the apply path: the crash comes once it
    // holds what the proxy served.
    let served = p1.table_version().await.unwrap();
    let cache = s.wd.path("p1.cache.json");
    let saved = wait_until(Duration::from_secs(5), || async {
        std::fs::read(&cache)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|c| c["version"].as_u64())
            == Some(served)
    })
    .await;
    assert!(
        saved.is_some(),
        "version {served} never reached {}",
        cache.display()
    );
    drop(p1);
    let p1 = s.proxy("p1").await;
    assert_eq!(p1.table_version().await, Some(served));
    let got = get_as(&client, &p1.url("/"), sample_ip("US"), None)
        .await
        .unwrap();
    assert_eq!((got.status, got.region()), (200, "us-west"));

    // The service comes back with every acknowledged version, densely numbered.
    let data = s.control.data.clone();
    let back = ControlProc::start_on(s.control.addr, &data, None, &[])
        .await
        .unwrap();
    let history = back.client().history(10_000).await.unwrap();
    let mut versions: Vec<u64> = history.versions.iter().map(|v| v.version).collect();
    versions.reverse();
    let last = *versions.last().unwrap();
    assert_eq!(
        versions,
        (1..=last).collect::<Vec<_>>(),
        "versions are not dense"
    );
    for a in &acked {
        assert!(versions.contains(a), "acknowledged version {a} lost");
    }
    // The proxy reconnects by itself and catches up.
    assert!(
        wait_until(Duration::from_secs(8), || async {
            p1.table_version().await == Some(last)
        })
        .await
        .is_some(),
        "proxy did not catch up to v{last}"
    );
}

#[tokio::test]
async fn rollback_restores_routing_and_is_audited() {
    let s = setup(&[]).await;
    let p = s.proxy("p1").await;
    let api = s.control.client();
    let client = reqwest::Client::new();
    let v2 = api
        .patch_region(
            "us-east",
            &PatchRegion {
                drain: Some(true),
                reason: "bad change".into(),
                ..PatchRegion::default()
            },
        )
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(3), || async {
        p.table_version().await == Some(v2.version)
    })
    .await
    .is_some());
    assert_eq!(
        get_as(&client, &p.url("/"), sample_ip("US"), None)
            .await
            .unwrap()
            .region(),
        "us-west"
    );

    let v3 = api.rollback(1, "undo bad change").await.unwrap();
    assert_eq!(v3.version, 3);
    assert!(wait_until(Duration::from_secs(3), || async {
        p.table_version().await == Some(3)
    })
    .await
    .is_some());
    let got = get_as(&client, &p.url("/"), sample_ip("US"), None)
        .await
        .unwrap();
    assert_eq!(got.region(), "us-east");
    assert_eq!(v3.table, api.version(1).await.unwrap().table);
    let audit = &v3.audit;
    assert_eq!(audit.actor, "ops");
    assert_eq!(audit.action, "rollback");
    assert_eq!(audit.reason, "undo bad change");
    assert_eq!(audit.restored, Some(1));
    assert!(
        audit.summary[0].contains("regions.us-east.drain"),
        "{audit:?}"
    );
}
