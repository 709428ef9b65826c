//! An upgrade whose certificate does not load leaves the running proxy
//! serving: the edge's TLS material is loaded before the listeners are
//! asked for (it was loaded after, and the old process drained and exited
//! behind a successor that had just failed).

use std::time::Duration;

use edgesteer_tests::*;

#[tokio::test]
async fn an_upgrade_with_a_bad_certificate_leaves_the_old_proxy_serving() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let dir = wd.path("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = make_pki(&dir, &[&["localhost"]]).unwrap();
    let mut proxy = Proxy::start(ProxyConfig {
        table: wd.write_table("table.toml", &spec).unwrap(),
        geo_db: Some(wd.geo_db().unwrap()),
        tls_certs: pki.leaves.clone(),
        extra_args: vec!["--grace-period".into(), "1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = proxy.url("/v1/covers");
    let get = || client.get(&url).send();
    assert_eq!(get().await.unwrap().status(), 200);

    // A rotation gone wrong: the certificate file is half written.
    std::fs::write(&pki.leaves[0].0, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    let err = proxy.upgrade().await.err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("exited")),
        "the successor started: {err:?}"
    );
    // Past the hand-off's wait (5 s) and the grace period: still serving.
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        let r = get().await;
        assert!(
            r.as_ref().is_ok_and(|r| r.status() == 200),
            "the old proxy stopped serving: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
