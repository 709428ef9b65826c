//! Geo routing, host pins, client-IP trust and metrics through a real proxy.

use std::time::Duration;

use edgesteer_tests::*;

async fn setup() -> (Workdir, Vec<edgesteer::demo::DemoBackend>, Proxy) {
    let wd = Workdir::new().unwrap();
    let (spec, backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    (wd, backends, proxy)
}

#[tokio::test]
async fn every_continent_lands_in_its_home_region() {
    let (_wd, _backends, proxy) = setup().await;
    let client = reqwest::Client::new();
    let cases = [
        ("US", "us-east"),      // North America
        ("CA", "us-east"),      // North America
        ("BR", "us-east"),      // South America
        ("DE", "eu-west"),      // Europe (zone eu)
        ("GB", "eu-west"),      // Europe, not EU
        ("ZA", "eu-west"),      // Africa
        ("NG", "eu-west"),      // Africa
        ("AE", "eu-west"),      // Middle East override
        ("CY", "eu-west"),      // EU member the database puts in Asia
        ("JP", "ap-southeast"), // Asia
        ("SG", "ap-southeast"),
        ("HK", "ap-southeast"), // not mainland China
        ("TW", "ap-southeast"),
        ("AU", "ap-southeast"), // Oceania
        ("CN", "cn-east"),      // mainland China, zone cn
        ("AQ", "us-east"),      // Antarctica
        ("DE6", "eu-west"),     // IPv6 clients
        ("CN6", "cn-east"),
        ("US6", "us-east"),
    ];
    for (who, want) in cases {
        let got = get_as(&client, &proxy.url("/v1/covers"), sample_ip(who), None)
            .await
            .unwrap();
        assert_eq!(got.status, 200, "{who}: {got:?}");
        assert_eq!(got.region(), want, "{who} was served by {}", got.region());
        assert_eq!(
            got.region_header.as_deref(),
            Some(want),
            "{who}: X-Steer-Region"
        );
        assert_eq!(got.body["path"], "/v1/covers");
    }
    // Private and unknown addresses go to the default region.
    for ip in ["10.1.2.3", "192.168.0.7", "200.200.200.200", "fd00::7"] {
        let got = get_as(&client, &proxy.url("/"), ip.parse().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(got.region(), "us-east", "{ip}");
    }
}

#[tokio::test]
async fn host_pins_and_pins_across_zones() {
    let (_wd, _backends, proxy) = setup().await;
    let client = reqwest::Client::new();
    let url = proxy.url("/v1/covers");
    let us = sample_ip("US");
    let de = sample_ip("DE");
    let cn = sample_ip("CN");

    // A US client may use the EU pin (eu is not isolated) ...
    let got = get_as(&client, &url, us, Some("api-eu.covergen.ai"))
        .await
        .unwrap();
    assert_eq!((got.status, got.region()), (200, "eu-west"));
    let got = get_as(&client, &url, us, Some("API-AP.covergen.ai:443"))
        .await
        .unwrap();
    assert_eq!((got.status, got.region()), (200, "ap-southeast"));
    // ... but not the CN pin (cn is isolated).
    let got = get_as(&client, &url, us, Some("api-cn.covergen.ai"))
        .await
        .unwrap();
    assert_eq!(got.status, 421, "{got:?}");
    // Every answer names a region: `none` where none served it.
    assert_eq!(got.region_header.as_deref(), Some("none"), "{got:?}");
    let msg = got.body.as_str().unwrap_or_default();
    assert!(
        msg.contains("cn-east") && msg.contains("isolated zone cn"),
        "{msg}"
    );
    // A German client may not leave zone eu through a pin.
    let got = get_as(&client, &url, de, Some("api-us.covergen.ai"))
        .await
        .unwrap();
    assert_eq!(got.status, 421);
    assert!(got.body.as_str().unwrap_or_default().contains("zone eu"));
    // A Chinese client is pinned inside its zone, and refused outside it.
    let got = get_as(&client, &url, cn, Some("api-cn.covergen.ai"))
        .await
        .unwrap();
    assert_eq!((got.status, got.region()), (200, "cn-east"));
    let got = get_as(&client, &url, cn, Some("api-ap.covergen.ai"))
        .await
        .unwrap();
    assert_eq!(got.status, 421);

    let metrics = proxy.metrics().await.unwrap();
    assert!(
        metrics.contains("edgesteer_pin_refused_total{zone=\"eu\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("edgesteer_pin_refused_total{zone=\"cn\"} 1"));
    assert!(metrics.contains("edgesteer_pin_refused_total{zone=\"none\"} 1"));
}

#[tokio::test]
async fn spoofed_forwarded_for_from_untrusted_peer_changes_nothing() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    // No --trust: loopback peers are ordinary clients.
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let client = reqwest::Client::new();
    let got = get_as(&client, &proxy.url("/"), sample_ip("CN"), None)
        .await
        .unwrap();
    // The peer (127.0.0.1) is private, so the default region, not cn-east.
    assert_eq!(got.region(), "us-east");
    // The upstream sees the real peer, not the spoofed chain.
    assert_eq!(got.body["forwarded_for"], "127.0.0.1");
    let got = client
        .get(proxy.url("/"))
        .header("forwarded", "for=36.1.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["x-steer-region"], "us-east");
}

#[tokio::test]
async fn metrics_count_requests_by_region_and_status() {
    let (_wd, _backends, proxy) = setup().await;
    let client = reqwest::Client::new();
    // Each client's track is sticky (10% canary by client IP); count by what the backends said.
    let mut want: std::collections::BTreeMap<(String, String), u32> = Default::default();
    for (who, n) in [("DE", 3), ("CN", 2)] {
        for _ in 0..n {
            let got = get_as(&client, &proxy.url("/"), sample_ip(who), None)
                .await
                .unwrap();
            let key = (
                got.region().to_string(),
                got.body["track"].as_str().unwrap().to_string(),
            );
            *want.entry(key).or_default() += 1;
        }
    }
    assert_eq!(want.values().sum::<u32>(), 5);
    get_as(
        &client,
        &proxy.url("/"),
        sample_ip("US"),
        Some("api-cn.covergen.ai"),
    )
    .await
    .unwrap();
    // Pingora runs the `logging` phase (where metrics are recorded) after
    // the response is written, so the client can get its answer before
    // the last request is counted: wait for the count, then check exactly.
    let last = "http_requests_total{region=\"none\",status=\"4xx\",track=\"stable\"} 1";
    wait_until(Duration::from_secs(2), || async {
        proxy.metrics().await.unwrap_or_default().contains(last)
    })
    .await;
    let m = proxy.metrics().await.unwrap();
    for ((region, track), n) in &want {
        let line = format!(
            "http_requests_total{{region=\"{region}\",status=\"2xx\",track=\"{track}\"}} {n}"
        );
        assert!(m.contains(&line), "missing `{line}` in\n{m}");
    }
    for line in [
        "http_requests_total{region=\"none\",status=\"4xx\",track=\"stable\"} 1",
        "http_requests_total{region=\"us-east\",status=\"2xx\",track=\"stable\"} 0",
        "edgesteer_table_version 1",
        "edgesteer_geo_lookups_total{result=\"found\"} 6",
    ] {
        assert!(m.contains(line), "missing `{line}` in\n{m}");
    }
}

#[tokio::test]
async fn dead_backend_is_retried_on_another() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    // One us-east backend points at a closed port; every GET must still succeed.
    let dead = free_port();
    spec.regions.get_mut("us-east").unwrap().backends[0].address = format!("127.0.0.1:{dead}");
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let client = reqwest::Client::new();
    for i in 0..40u8 {
        let ip = format!("3.3.3.{i}").parse().unwrap();
        let got = get_as(&client, &proxy.url("/"), ip, None).await.unwrap();
        assert_eq!((got.status, got.region()), (200, "us-east"), "{got:?}");
        assert_ne!(
            got.body["backend"], "us-east-1",
            "the dead backend answered?"
        );
    }
}
