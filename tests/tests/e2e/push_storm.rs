//! A push storm (issue 33): 100 pushes that remove and re-add a backend,
//! some within one health tick, under load. Every backend of the last
//! table is probed in its live state afterwards (no state left behind by
//! a probe that kept an old one), and no request fails meanwhile.

use std::time::Duration;

use serde_json::Value;

use edgesteer_tests::*;

/// The us-east endpoints in a `/v1/health` document: (address, last probe).
fn us_east(health: &Value) -> Vec<(String, Value)> {
    health["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["region"] == "us-east")
        .flat_map(|r| r["backends"].as_array().cloned().unwrap_or_default())
        .flat_map(|b| b["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addr"].as_str().unwrap_or_default().to_string(),
                e["last_probe"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_storm_leaves_every_backend_probed_and_fails_nothing() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (mut spec, mut backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("data"), Some(&seed), &[])
        .await
        .unwrap();
    let proxy = wd.follower(&control, "p1").await.unwrap();
    let api = control.client();

    // The second stable us-east backend comes and goes.
    let x = spec.regions["us-east"].backends[1].address.clone();
    let mut without = spec.clone();
    without
        .regions
        .get_mut("us-east")
        .unwrap()
        .backends
        .retain(|b| b.address != x);

    // Load: 100 requests/s from US clients, each with its own key.
    let url = proxy.url("/v1/covers");
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let go = running.clone();
    let load = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let (mut ok, mut failed) = (0u32, Vec::new());
        let mut i = 0u32;
        while go.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            i += 1;
            let r = http
                .get(&url)
                .header("x-forwarded-for", sample_ip("US").to_string())
                .header("x-api-key", format!("storm-{i}"))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => ok += 1,
                Ok(r) => failed.push(r.status().as_u16()),
                Err(_) => failed.push(0),
            }
        }
        (ok, failed)
    });

    // 100 pushes: 50 removals, each followed by the re-add 50 ms later
    // (each push reaches the proxy on its own, but both within one health
    // tick) or 300 ms later.
    for i in 0..50 {
        let removed = api.put(&without, &format!("storm {i}: out"), None).await;
        assert!(removed.is_ok(), "{removed:?}");
        let gap = if i % 2 == 0 { 50 } else { 300 };
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let added = api.put(&spec, &format!("storm {i}: back"), None).await;
        assert!(added.is_ok(), "{added:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = api.get().await.unwrap().version;
    let applied = wait_until(Duration::from_secs(10), || async {
        proxy.table_version().await == Some(last)
    })
    .await;
    assert!(applied.is_some(), "the proxy never took version {last}");

    // Every us-east endpoint has been probed in its live state.
    let probed = wait_until(Duration::from_secs(5), || async {
        let h = proxy.health().await.unwrap_or_default();
        let eps = us_east(&h);
        eps.len() == 3 && eps.iter().all(|(_, p)| !p.is_null())
    })
    .await;
    assert!(
        probed.is_some(),
        "{:?}",
        us_east(&proxy.health().await.unwrap())
    );
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 100, "the load ran ({ok} answered)");
    assert!(
        failed.is_empty(),
        "{} failed during the storm: {failed:?}",
        failed.len()
    );

    // And the live state follows the backend: stop X, and it goes down.
    let at = backends
        .iter()
        .position(|b| x.ends_with(&b.addr.port().to_string()))
        .expect("x is one of the demo backends");
    backends[at].stop();
    let down = wait_until(Duration::from_secs(5), || async {
        let h = proxy.health().await.unwrap_or_default();
        us_east(&h)
            .iter()
            .any(|(addr, p)| *addr == x && p["ok"] == false)
    })
    .await;
    assert!(
        down.is_some(),
        "x was never probed down: {:?}",
        us_east(&proxy.health().await.unwrap())
    );
}
