//! Origins over TLS: real rustls origins with certificates made in the
//! test (rcgen): TLS 1.3 with the expected SNI, h2 multiplexing, a wrong
//! CA and a name mismatch refused (and counted, and shown in health), mTLS
//! both ways, and a client certificate rotated while serving.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edgesteer::demo::{spawn_backend_tls, DemoBackend, DemoPki, Identity};
use edgesteer_config::wire::{TableSpec, UpstreamSpec};
use edgesteer_listener::server_tls_with;
use serde_json::Value;

use edgesteer_tests::*;

/// A TLS origin for region `r` with `cert`/`key`; `client_ca` makes it
/// require a client certificate chaining to that CA.
pub(crate) async fn origin(
    name: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> DemoBackend {
    let config = server_tls_with(cert, key, client_ca, client_ca.is_some()).unwrap();
    let id = Identity {
        region: "r".into(),
        backend: name.into(),
        track: "stable".into(),
    };
    spawn_backend_tls(id, SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap()
}

/// One region `r` on `backends` (address, weight), reached with `upstream`.
pub(crate) fn table(
    backends: &[(SocketAddr, u32)],
    upstream: UpstreamSpec,
    health: &str,
) -> TableSpec {
    let list: Vec<String> = backends
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect();
    let text = format!(
        "default_region = \"r\"\n[headers]\nversion = true\n[health]\npath = \"/health\"\n{health}\n[regions.r]\nbackends = [{}]\n",
        list.join(", ")
    );
    let mut spec = edgesteer_config::parse::from_toml(&text).unwrap();
    spec.regions.get_mut("r").unwrap().upstream = Some(upstream);
    spec
}

pub(crate) fn trusting(pki: &DemoPki) -> UpstreamSpec {
    UpstreamSpec {
        tls: Some(true),
        sni: Some("localhost".into()),
        ca: Some(pki.ca.display().to_string()),
        alpn: Some(vec!["h2".into(), "http/1.1".into()]),
        ..Default::default()
    }
}

fn accepted(b: &DemoBackend) -> u64 {
    b.conns
        .as_ref()
        .map_or(0, |c| c.accepted.load(Ordering::Relaxed))
}

#[tokio::test]
async fn tls13_with_the_expected_sni_and_h2_multiplexed() {
    let wd = Workdir::new().unwrap();
    let pki = DemoPki::generate(&wd.path("pki")).unwrap();
    let a = origin("a", &pki.cert, &pki.key, None).await;
    // Probes once at start, then rarely: the connection count below is
    // the data plane's.
    let spec = table(
        &[(a.addr, 1)],
        trusting(&pki),
        "interval_ms = 60000\ntimeout_ms = 1000",
    );
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let client = reqwest::Client::new();
    let (status, body) = get_json(&client, &proxy.url("/v1/covers")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sni"], "localhost", "{body}");
    assert_eq!(body["tls_version"], "TLSv1_3", "{body}");
    assert_eq!(body["http_version"], "HTTP/2.0", "{body}");

    // 100 concurrent requests share a handful of h2 connections.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = accepted(&a);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), proxy.url("/slow?ms=200"));
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let opened = accepted(&a) - before;
    assert!(
        opened <= 4,
        "100 concurrent requests opened {opened} upstream connections"
    );
}

#[tokio::test]
async fn a_wrong_ca_is_a_counted_connect_failure_retried_elsewhere_and_unhealthy() {
    let wd = Workdir::new().unwrap();
    let pki = DemoPki::generate(&wd.path("pki")).unwrap();
    let other = DemoPki::generate(&wd.path("other")).unwrap();
    let good = origin("good", &pki.cert, &pki.key, None).await;
    let bad = origin("bad", &other.cert, &other.key, None).await;
    // The bad origin takes nearly every first pick; probes mark it down
    // only after two rounds (about 3 s: at 1 s a slow start on a loaded
    // machine could let them win), so the first requests meet it.
    let spec = table(
        &[(good.addr, 1), (bad.addr, 1000)],
        trusting(&pki),
        // Only the probes judge here (passive ejection would show its own cause).
        "interval_ms = 3000\ntimeout_ms = 500\nunhealthy_after = 2\n[outlier]\nconsecutive_failures = 0",
    );
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let (status, body) = get_json(&client, &proxy.url("/v1/covers")).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["backend"], "good", "{body}");
    }
    assert_eq!(bad.served.load(Ordering::Relaxed), 0);
    let m = proxy.metrics().await.unwrap();
    assert!(
        metric_value(
            &m,
            r#"edgesteer_upstream_tls_errors_total{reason="unknown_ca",region="r"}"#
        ) >= 1.0,
        "{m}"
    );
    // Marked unhealthy by its probes, with the reason.
    let bad_key = bad.addr.to_string();
    let down = wait_until(Duration::from_secs(10), || async {
        let h = proxy.health().await.unwrap();
        backend_status(&h, &bad_key).is_some_and(|b| {
            b["available"] == false
                && b["endpoints"][0]["reason"]
                    .to_string()
                    .contains("unknown CA")
        })
    })
    .await;
    assert!(down.is_some(), "health: {}", proxy.health().await.unwrap());
    let (status, body) = get_json(&client, &proxy.url("/v1/covers")).await.unwrap();
    assert_eq!((status, body["backend"].as_str()), (200, Some("good")));
}

/// The backend with `key` in `/v1/health`.
fn backend_status(health: &Value, key: &str) -> Option<Value> {
    health["regions"]
        .as_array()?
        .iter()
        .flat_map(|r| r["backends"].as_array().into_iter().flatten())
        .find(|b| b["backend"] == key)
        .cloned()
}

#[tokio::test]
async fn a_name_mismatch_is_refused() {
    let wd = Workdir::new().unwrap();
    let pki = DemoPki::generate(&wd.path("pki")).unwrap();
    let a = origin("a", &pki.cert, &pki.key, None).await;
    let mut up = trusting(&pki);
    up.sni = Some("not-the-origin.example".into());
    let spec = table(&[(a.addr, 1)], up, "interval_ms = 60000\ntimeout_ms = 1000");
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let (status, body) = get_json(&reqwest::Client::new(), &proxy.url("/v1/covers"))
        .await
        .unwrap();
    assert!(status == 502 || status == 503, "{status} {body}");
    assert_eq!(
        a.served.load(Ordering::Relaxed),
        0,
        "the origin served a request"
    );
    let m = proxy.metrics().await.unwrap();
    assert!(
        metric_value(
            &m,
            r#"edgesteer_upstream_tls_errors_total{reason="name_mismatch",region="r"}"#
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn mtls_origin_takes_the_proxys_certificate_refuses_a_plain_client_and_rotation_keeps_serving(
) {
    let wd = Workdir::new().unwrap();
    let pki = DemoPki::generate(&wd.path("pki")).unwrap();
    let clients_dir = wd.path("clients");
    std::fs::create_dir_all(&clients_dir).unwrap();
    let clients = make_pki(&clients_dir, &[&["proxy-1"], &["proxy-2"]]).unwrap();
    let client_ca = wd.path("client-ca.pem");
    std::fs::write(&client_ca, &clients.ca_pem).unwrap();
    let a = origin("a", &pki.cert, &pki.key, Some(&client_ca)).await;

    // The proxy's client certificate lives at a fixed path, rotated later.
    let (cert, key) = (wd.path("proxy.pem"), wd.path("proxy.key"));
    std::fs::copy(&clients.leaves[0].0, &cert).unwrap();
    std::fs::copy(&clients.leaves[0].1, &key).unwrap();
    let mut up = trusting(&pki);
    up.client_cert = Some(cert.display().to_string());
    up.client_key = Some(key.display().to_string());
    let spec = table(&[(a.addr, 1)], up, "interval_ms = 500\ntimeout_ms = 400");
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let client = reqwest::Client::new();
    let (status, body) = get_json(&client, &proxy.url("/v1/covers")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let names = body["client_cert"].to_string();
    assert!(names.contains("proxy-1"), "{body}");

    // A client that trusts the origin but has no certificate is refused.
    let plain = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let direct = plain
        .get(format!("https://localhost:{}/v1/covers", a.addr.port()))
        .send()
        .await;
    assert!(
        direct.is_err(),
        "a client without a certificate got {direct:?}"
    );

    // Rotate: the new certificate is renamed over the old files, the key
    // first and the certificate one reload tick (5 s) later. The
    // half-rotated pair (proxy-1's certificate, proxy-2's key) does not
    // load, and proxy-1's keeps serving meanwhile: it was installed, and
    // every handshake with the origin failed until the certificate came.
    let tmp_cert = wd.path("proxy.pem.new");
    let tmp_key = wd.path("proxy.key.new");
    std::fs::copy(&clients.leaves[1].0, &tmp_cert).unwrap();
    std::fs::copy(&clients.leaves[1].1, &tmp_key).unwrap();
    std::fs::rename(&tmp_key, &key).unwrap();
    let half = std::time::Instant::now();
    while half.elapsed() < Duration::from_secs(6) {
        let (status, body) = get_json(&client, &proxy.url("/v1/covers")).await.unwrap();
        assert_eq!(status, 200, "with a half-rotated pair: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::rename(&tmp_cert, &cert).unwrap();
    let failures = std::sync::Mutex::new(Vec::new());
    let rotated = wait_until(Duration::from_secs(12), || async {
        let (status, body) = get_json(&client, &proxy.url("/v1/covers")).await.unwrap();
        if status != 200 {
            failures.lock().unwrap().push(format!("{status} {body}"));
        }
        // A new connection carries the new certificate; pooled ones the old.
        body["client_cert"].to_string().contains("proxy-2")
    })
    .await;
    assert!(
        rotated.is_some(),
        "the rotated certificate never reached the origin"
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "requests failed during rotation: {failures:?}"
    );
}

#[tokio::test]
async fn bad_upstream_settings_are_refused_with_the_field_named() {
    let mut spec = table(
        &[(SocketAddr::from(([127, 0, 0, 1], 1)), 1)],
        UpstreamSpec {
            tls: Some(true),
            verify: Some(false),
            ca: Some("/nonexistent/ca.pem".into()),
            alpn: Some(vec!["h2c".into()]),
            ..Default::default()
        },
        "",
    );
    let err = edgesteer_config::compile(&spec).unwrap_err().to_string();
    for field in [
        "regions.r.upstream.verify",
        "regions.r.upstream.ca",
        "regions.r.upstream.alpn",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    spec.regions.get_mut("r").unwrap().upstream = Some(UpstreamSpec {
        verify: Some(false),
        insecure_skip_verify: Some(true),
        tls: Some(true),
        ..Default::default()
    });
    assert!(edgesteer_config::compile(&spec).is_ok());
}
