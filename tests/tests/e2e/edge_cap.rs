//! The connection cap counts TLS handshakes under way, and refuses a
//! connection past it before its handshake (issue 26).

use std::time::Duration;

use tokio::net::TcpStream;

use edgesteer_tests::*;

use crate::edge_conns::open_becomes;

#[tokio::test]
async fn tls_handshakes_under_way_count_against_the_connection_cap() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.limits.max_connections = Some(3);
    spec.limits.tls_handshake_timeout_ms = Some(10_000);
    let (proxy, pki) = wd
        .start_tls_proxy(&spec, &[&["api.covergen.ai"]])
        .await
        .unwrap();
    let tls_addr = proxy.tls.unwrap();
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let client = || {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .resolve("api.covergen.ai", tls_addr)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    };
    let url = format!("https://api.covergen.ai:{}/v1/covers", tls_addr.port());
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    assert!(
        open_becomes(&proxy, 0.0).await,
        "other connections stayed open"
    );
    let refused = |m: &str| metric_value(m, "edgesteer_connections_refused_total");
    let before = refused(&proxy.metrics().await.unwrap());

    // Three handshakes under way (connected, nothing sent) fill the cap.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(tls_addr).await.unwrap());
    }
    // Counted before their handshakes (an event, not a sleep).
    let counted = wait_until(Duration::from_secs(5), || async {
        let text = proxy.metrics().await.unwrap_or_default();
        metric(&text, "edgesteer_tls_handshakes_in_progress") == Some(3.0)
    })
    .await;
    assert!(
        counted.is_some(),
        "the handshakes under way were not counted"
    );
    let r = client().get(&url).send().await;
    assert!(r.is_err(), "a fourth connection was served: {r:?}");
    let after = refused(&proxy.metrics().await.unwrap());
    assert_eq!(after - before, 1.0, "the fourth was refused, and only it");

    // Room again once the stalled handshakes are gone (and the gauge
    // counts them out).
    drop(silent);
    let none = wait_until(Duration::from_secs(5), || async {
        let text = proxy.metrics().await.unwrap_or_default();
        metric(&text, "edgesteer_tls_handshakes_in_progress") == Some(0.0)
    })
    .await;
    assert!(none.is_some(), "ended handshakes still counted");
    let ok = wait_until(Duration::from_secs(3), || async {
        client()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok.is_some(), "no room after the handshakes ended");
}
