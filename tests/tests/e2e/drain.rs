//! SIGTERM ends the grace period early: an idle proxy exits at once, a
//! busy one as soon as its last in-flight request is answered, and never
//! before.

use std::time::{Duration, Instant};

use edgesteer_tests::*;

/// A proxy on covergen with `--grace-period 5`.
async fn proxy_with_grace(wd: &Workdir) -> (Proxy, Vec<edgesteer::demo::DemoBackend>) {
    let (spec, backends) = covergen_on_loopback().await.unwrap();
    let proxy = Proxy::start(ProxyConfig {
        table: wd.write_table("table.toml", &spec).unwrap(),
        geo_db: Some(wd.geo_db().unwrap()),
        extra_args: vec!["--grace-period".into(), "5".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    (proxy, backends)
}

#[tokio::test]
async fn sigterm_to_an_idle_proxy_exits_without_waiting_the_grace_period() {
    let wd = Workdir::new().unwrap();
    let (mut proxy, _backends) = proxy_with_grace(&wd).await;
    // Served a request, and still holds its keep-alive connection idle.
    let client = reqwest::Client::new();
    let r = client.get(proxy.url("/v1/covers")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let start = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(15)).await;
    let took = start.elapsed();
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    assert!(
        took < Duration::from_millis(2500),
        "an idle proxy took {took:?} to exit with --grace-period 5"
    );
}

#[tokio::test]
async fn sigterm_answers_a_slow_request_then_exits_before_the_grace_period_ends() {
    let wd = Workdir::new().unwrap();
    let (mut proxy, _backends) = proxy_with_grace(&wd).await;
    let slow = tokio::spawn(
        reqwest::Client::new()
            .get(proxy.url("/slow?ms=2000"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    proxy.signal("TERM");
    let answer = slow.await.unwrap();
    let answered = start.elapsed();
    let status = answer.map(|r| r.status().as_u16());
    assert_eq!(
        status.as_ref().ok(),
        Some(&200),
        "the slow request: {status:?}"
    );
    let exit = proxy.wait_exit(Duration::from_secs(15)).await;
    let exited = start.elapsed();
    assert!(exit.is_some_and(|s| s.success()), "exit: {exit:?}");
    assert!(
        exited < Duration::from_millis(4000),
        "exited {exited:?} after SIGTERM, {:?} after the last answer, with --grace-period 5",
        exited - answered
    );
}
