//! Rollout gates judge the backend, not the clients: a canary that
//! answers slowly is rolled back by the p99 gate, and clients that stall
//! or hang up on a canary move nothing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use edgesteer_config::model::RolloutState;
use edgesteer_control_api::api::RolloutCommand;
use edgesteer_tests::*;

use crate::rollout::{gated, load, rollout_state, setup, start, track_of};

#[tokio::test]
async fn a_slow_canary_is_rolled_back_by_the_p99_gate() {
    let s = setup().await;
    let p = s.proxy("p1").await;
    let api = s.control.client();
    // A latency regression and no error: every canary answer 300 ms late
    // (the 500 ms bucket), against a stable p99 of a few ms. 10x fires
    // unless stable's own p99 reaches 50 ms.
    s.canary("us-east").delay_ms.store(300, Ordering::Relaxed);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four loads, so the slow canary answers still make 20 in a few seconds.
    let loads: Vec<_> = (0..4)
        .map(|_| load(p.url("/v1/covers"), stop.clone()))
        .collect();
    let release = RolloutCommand {
        min_requests: Some(20),
        max_p99_ratio: Some(10.0),
        reason: "release with a slow canary".into(),
        ..start(&[(5000, 60_000), (10_000, 1000)])
    };
    api.rollout("us-east", &release).await.unwrap();
    let back = wait_until(Duration::from_secs(20), || async {
        rollout_state(&api, "us-east")
            .await
            .is_some_and(|r| r.state == RolloutState::RolledBack)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    s.canary("us-east").delay_ms.store(0, Ordering::Relaxed);
    let st = rollout_state(&api, "us-east").await;
    assert!(back.is_some(), "not rolled back: {st:?}");
    let st = st.unwrap();
    assert_eq!(st.canary_bps, 0, "{st:?}");
    // The p99 gate did it, on the figures it names: no error at all.
    let f = st.figures.as_ref().expect("no figures");
    assert_eq!(f.canary_error_rate, 0.0, "{f:?}");
    assert!(f.canary_p99_ms.is_some_and(|p| p >= 500.0), "{f:?}");
    let history = api.history(5).await.unwrap();
    let reason = &history.versions[0].audit.reason;
    assert!(
        reason.contains("gate p99 failed at step 1: canary p99")
            && reason.contains("ms > 10 x stable p99"),
        "{reason}"
    );
    assert_eq!(
        api.get().await.unwrap().table.regions["us-east"].canary_bps,
        0
    );
}

#[tokio::test]
async fn clients_that_stall_or_hang_up_cannot_roll_back_a_canary() {
    use tokio::io::AsyncWriteExt;
    let s = setup().await;
    let p = s.proxy("p1").await;
    let api = s.control.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let l = load(p.url("/v1/covers"), stop.clone());
    // One long step at 50%: the gates judge the canary all along. The p99
    // gate would fire on stalls (1.5 s, bucket 2,000 ms) and hang-ups
    // (0.7 s, bucket 1,000 ms) against a stable p99 up to 5 ms; the
    // figures' p99 is checked below whatever stable's.
    let release = gated(20, &[(5000, 60_000), (10_000, 1000)]);
    api.rollout("us-east", &release).await.unwrap();
    let v = api.get().await.unwrap().version;
    assert!(wait_until(Duration::from_secs(3), || async {
        p.table_version().await == Some(v)
    })
    .await
    .is_some());
    // Users the proxy puts in the canary.
    let client = reqwest::Client::new();
    let mut canary_keys = Vec::new();
    for k in 0..200 {
        let key = format!("abuser-{k}");
        if track_of(&client, &p, &key).await.1 == "canary" {
            canary_keys.push(key);
        }
        if canary_keys.len() == 20 {
            break;
        }
    }
    assert_eq!(canary_keys.len(), 20);
    let us = sample_ip("US").to_string();
    for _ in 0..3 {
        // 20 canary users announce an upload too big to buffer at the edge
        // (so it streams to the canary) and never send it; 20 hang up before
        // their answer.
        let mut stalled = Vec::new();
        for key in &canary_keys {
            let mut c = tokio::net::TcpStream::connect(p.addr).await.unwrap();
            let head = format!(
                "POST /upload HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {us}\r\nX-Api-Key: {key}\r\nContent-Length: 100000\r\n\r\nabc"
            );
            c.write_all(head.as_bytes()).await.unwrap();
            stalled.push(c);
        }
        for key in &canary_keys {
            let mut c = tokio::net::TcpStream::connect(p.addr).await.unwrap();
            let head = format!(
                "GET /slow?ms=700 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {us}\r\nX-Api-Key: {key}\r\n\r\n"
            );
            c.write_all(head.as_bytes()).await.unwrap();
            drop(c);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(stalled);
    }
    // Several report intervals (0.5 s) and gate checks later: still running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = rollout_state(&api, "us-east").await;
    assert!(
        st.as_ref()
            .is_some_and(|r| r.state == RolloutState::Running && r.step == 0),
        "a client's fault moved the rollout: {st:?}"
    );
    // The gates had figures to judge (the load's canary users reported),
    // and none of the 120 client faults is in them: no error, and no
    // request of 0.7 s (the hang-ups) or 1.5 s (the stalls) in the
    // canary's p99 (each would put it in the 1,000 or 2,000 ms bucket).
    let f = st.and_then(|r| r.figures).expect("no figures reported");
    assert!(f.canary_requests >= 20, "{f:?}");
    assert_eq!(f.canary_error_rate, 0.0, "{f:?}");
    assert!(f.canary_p99_ms.is_some_and(|p| p < 1000.0), "{f:?}");
    stop.store(true, Ordering::Relaxed);
    l.await.unwrap();
    // And no backend was charged for it.
    let health = p.health().await.unwrap();
    for region in health["regions"].as_array().unwrap() {
        for backend in region["backends"].as_array().unwrap() {
            for ep in backend["endpoints"].as_array().unwrap() {
                assert_ne!(ep["state"], "ejected", "a client ejected a backend: {ep}");
            }
        }
    }
}
