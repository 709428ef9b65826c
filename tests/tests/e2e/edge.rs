//! Edge hardening with real sockets: ambiguous or oversized heads are
//! answered by the proxy and never reach an origin, a client's forwarding
//! headers are not passed on, bodies are read whole or timed out at the
//! edge, what a client does wrong never ejects a healthy backend, and
//! retries keep to their budget. Connection lifetimes are in `edge_conns`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use edgesteer_tests::*;

/// Sends raw bytes and reads what comes back until the proxy closes or
/// 3 s pass.
async fn raw(proxy: &Proxy, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn served(backends: &[edgesteer::demo::DemoBackend]) -> u64 {
    backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test]
async fn ambiguous_and_oversized_heads_never_reach_an_origin() {
    let wd = Workdir::new().unwrap();
    let (spec, backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let before = served(&backends);

    let smuggle = raw(
        &proxy,
        b"POST /v1/covers HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(smuggle.starts_with("HTTP/1.1 400"), "{smuggle}");
    assert!(smuggle.contains("\"error\":\"bad_framing\""), "{smuggle}");

    let long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let got = raw(&proxy, long.as_bytes()).await;
    assert!(
        got.starts_with("HTTP/1.1 431"),
        "{}",
        &got[..got.len().min(200)]
    );
    assert!(got.contains("x-long"), "{got}");

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let got = raw(
        &proxy,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");

    // A TLS ClientHello's first bytes and then some, as a client that
    // speaks TLS to the plaintext port sends.
    let mut hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
    hello.extend(std::iter::repeat_n(0x2a, 200));
    let garbage = raw(&proxy, &hello).await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    assert_eq!(served(&backends), before, "an origin saw a refused request");
    let m = proxy.metrics().await.unwrap();
    assert!(
        metric_value(&m, r#"edgesteer_refusals_total{reason="bad_framing"}"#) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(&m, r#"edgesteer_refusals_total{reason="head_too_large"}"#) >= 2.0,
        "{m}"
    );
    // Every reason is there from the start, at 0 if it never happened.
    assert_eq!(
        metric(&m, r#"edgesteer_refusals_total{reason="pin_refused"}"#),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_clients_forwarding_headers_never_reach_the_origin() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    // Loopback is not trusted: the test client is an ordinary client.
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let body: Value = reqwest::Client::new()
        .get(proxy.url("/"))
        .header("forwarded", "for=36.1.1.1;proto=https")
        .header("x-real-ip", "36.1.1.1")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-port", "1")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "36.1.1.1")
        .header("x_forwarded_for", "36.1.1.1")
        .header("x-real_ip", "36.1.1.1")
        .header("X_Forwarded_Proto", "https")
        .header("x_api_version", "2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in ["forwarded", "real_ip", "forwarded_host", "forwarded_port"] {
        assert!(body[field].is_null(), "{field} reached the origin: {body}");
    }
    assert_eq!(body["forwarded_proto"], "http", "{body}");
    assert_eq!(body["forwarded_for"], "127.0.0.1", "{body}");
    // Their `_` spellings, which CGI-style origins read as the real ones,
    // are dropped; other names with `_` pass.
    assert_eq!(
        body["underscored"],
        serde_json::json!(["x_api_version"]),
        "{body}"
    );

    // From a trusted peer the whole chain (every line) is kept and extended.
    let trusted = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let mut req = reqwest::Client::new()
        .get(trusted.url("/"))
        .build()
        .unwrap();
    let h = req.headers_mut();
    h.append("x-forwarded-for", "36.1.1.1".parse().unwrap());
    h.append("x-forwarded-for", "5.0.1.1".parse().unwrap());
    let body: Value = reqwest::Client::new()
        .execute(req)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["forwarded_for"], "36.1.1.1, 5.0.1.1, 127.0.0.1",
        "{body}"
    );
}

#[tokio::test]
async fn stalled_uploads_and_hang_ups_eject_nothing() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.retry.per_try_timeout_ms = Some(4000);
    spec.retry.total_timeout_ms = Some(8000);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let de = sample_ip("DE").to_string();
    let upstream_active = || async {
        let text = proxy.metrics().await.unwrap();
        metric_value(&text, "edgesteer_upstream_requests_active")
    };
    // 20 POSTs that announce a body (larger than the edge buffers, so it
    // streams to the origin) and never send it.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {de}\r\nContent-Length: 100000\r\n\r\nabc"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    // The origin's wait (per try, 4 s) runs out while the body is still
    // to come: the client's doing, answered 408 (not the origin's 502/504).
    let mut first = stalled.swap_remove(0);
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(8), first.read(&mut buf))
        .await
        .expect("no answer to a stalled upload")
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"error\":\"request_timeout\""), "{got}");
    drop(stalled);
    let idle = wait_until(Duration::from_secs(5), || async {
        upstream_active().await == 0.0
    })
    .await;
    assert!(
        idle.is_some(),
        "the stalled uploads still hold origin requests"
    );

    // 20 clients that hang up while their request is at the origin (the
    // demo backend's /slow answers after 3 s, within the 4 s per try).
    let mut waiting = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let head =
            format!("GET /slow?ms=3000 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {de}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        waiting.push(s);
    }
    let in_flight = wait_until(Duration::from_secs(2), || async {
        upstream_active().await == 20.0
    })
    .await;
    assert!(
        in_flight.is_some(),
        "the 20 requests never all reached the origin"
    );
    drop(waiting);
    // The proxy notices each hang-up and lets go of the origin request
    // well before the origin would have answered.
    let released = wait_until(Duration::from_millis(2500), || async {
        upstream_active().await == 0.0
    })
    .await;
    assert!(released.is_some(), "hang-ups left origin requests open");

    let health = proxy.health().await.unwrap();
    // No endpoint anywhere was ejected or even charged a failure.
    for region in health["regions"].as_array().unwrap() {
        for backend in region["backends"].as_array().unwrap() {
            for ep in backend["endpoints"].as_array().unwrap() {
                assert_ne!(ep["state"], "ejected", "a client ejected a backend: {ep}");
                assert_eq!(
                    ep["passive_failures"], 0,
                    "a client's fault was charged: {ep}"
                );
            }
        }
    }
    // And the region still serves.
    let got = get_as(
        &reqwest::Client::new(),
        &proxy.url("/"),
        sample_ip("DE"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(got.region(), "eu-west");
}

#[tokio::test]
async fn small_bodies_are_read_whole_at_the_edge_and_a_stalled_one_gets_408() {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    spec.limits.body_read_idle_ms = Some(1000);
    spec.limits.buffer_body_bytes = Some(1024);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let before = served(&backends);
    let head = |len: usize| {
        format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n").into_bytes()
    };

    // A body trickled in four pieces, each within the idle limit: served
    // whole (the upload endpoint answers 400 to a short body).
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&head(100)).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[b'x'; 25]).await.unwrap();
    }
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // A body that stops: 408 from the proxy at the idle limit, in the
    // house JSON, and the origin never hears of it.
    let t0 = std::time::Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&head(100)).await.unwrap();
    s.write_all(b"abc").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut out)).await;
    let got = String::from_utf8_lossy(&out);
    let took = t0.elapsed();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"error\":\"request_timeout\""), "{got}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );

    // A body over the limit streams as before, and is served whole.
    let big = reqwest::Client::new()
        .post(proxy.url("/upload"))
        .body(vec![b'y'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 200);

    assert_eq!(served(&backends) - before, 2);
    let m = proxy.metrics().await.unwrap();
    assert_eq!(
        metric_value(&m, "edgesteer_refusals_total{reason=\"body_timeout\"} "),
        1.0
    );
}

/// A backend that passes its health checks and fails every request: it
/// closes the connection as soon as a request head (other than a probe)
/// arrives. Counts the requests it failed.
async fn failing_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let failed = Arc::new(AtomicU64::new(0));
    let count = failed.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        if head.starts_with(b"GET /health") {
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                            head.drain(..end + 4);
                        } else {
                            count.fetch_add(1, Ordering::Relaxed);
                            return; // closed before any answer
                        }
                    }
                }
            });
        }
    });
    (addr, failed)
}

#[tokio::test]
async fn retries_stay_within_the_budget_when_every_backend_fails() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let mut backends = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..4 {
        let (addr, failed) = failing_backend().await;
        backends.push(format!("{{ address = \"{addr}\" }}"));
        counters.push(failed);
    }
    let text = format!(
        "default_region = \"r\"\n[health]\npath = \"/health\"\ninterval_ms = 500\ntimeout_ms = 200\n\
         [retry]\nmax_attempts = 4\n[outlier]\nconsecutive_failures = 0\nconsecutive_5xx = 0\n\
         [regions.r]\nbackends = [{}]\n",
        backends.join(", ")
    );
    let spec = edgesteer_config::parse::from_toml(&text).unwrap();
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    let attempts = || {
        counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let client = reqwest::Client::new();
    let url = proxy.url("/v1/covers");

    // A quiet proxy (one request at a time) may use the minimum budget of
    // 3 retries: every request makes all 4 attempts, one per backend.
    for _ in 0..20 {
        let r = client.get(&url).send().await.unwrap();
        assert!(r.status().is_server_error(), "{}", r.status());
    }
    assert_eq!(attempts(), 80, "20 requests x 4 attempts");

    // A brown-out: 100 clients at once, 5 requests each. Retries in flight
    // may be at most 20% of the requests in flight, and each is held until
    // its request ends, so the retries are at most a quarter of the
    // requests (a little more at the edges, where the minimum of 3 holds):
    // about 625 attempts, where 4 attempts each would be 2,000.
    let before = attempts();
    let requests = 500u64;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_server_error(), "{}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let made = attempts() - before;
    assert!(
        made >= requests && made as f64 <= requests as f64 * 1.4,
        "{made} upstream attempts for {requests} requests (budget: <= ~{})",
        requests * 5 / 4
    );
    let m = proxy.metrics().await.unwrap();
    let refused = metric_value(&m, "edgesteer_retries_refused_total ");
    assert!(refused > 0.0, "no retry was refused by the budget");
    println!("brown-out: {made} attempts for {requests} requests, {refused} retries refused");
}
