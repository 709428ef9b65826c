//! Connection lifetimes at the edge: keep-alive idle timeouts, requests
//! per connection, the connection cap, the head deadline (slowloris) and
//! the TLS handshake deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use edgesteer_tests::*;

use crate::edge::served;

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_tables_limit() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.limits.keepalive_idle_ms = Some(1000);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle past the limit: the proxy closes the connection (read gives EOF).
    closed_after_a_second_idle(&mut s).await;
}

/// Idles on `s` until the proxy closes it (read gives EOF), and checks
/// that it was after about the 1 s keep-alive timeout, not earlier.
async fn closed_after_a_second_idle(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the idle connection was still open after 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected EOF");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

/// The connection keeps one idle timer across its requests, armed lazily:
/// a timer set for an earlier request's wait must not close the connection
/// before the current wait's own keep-alive timeout.
#[tokio::test]
async fn each_keep_alive_wait_gets_its_whole_idle_timeout() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.limits.keepalive_idle_ms = Some(1000);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    // Requests 600 ms apart: each wait ends well inside its own 1 s, but
    // the third comes 1.2 s after the first wait began.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("no answer within 3 s")
            .unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("HTTP/1.1 200"), "request {i}: {got:?}");
    }
    // Then idle: closed about 1 s after the last answer, not earlier.
    closed_after_a_second_idle(&mut s).await;
}

#[tokio::test]
async fn a_connection_carries_at_most_the_tables_requests() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.limits.max_requests_per_connection = Some(3);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut served = 0;
    let mut last = String::new();
    for _ in 0..5 {
        if s.write_all(b"GET /v1/covers HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .is_err()
        {
            break;
        }
        let mut buf = vec![0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("no answer and no close")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        last = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(last.starts_with("http/1.1 200"), "{last}");
        served += 1;
    }
    assert_eq!(served, 3, "requests served on one connection");
    // The last answer said so, so a client opens a new connection instead
    // of racing a request onto a closing one.
    assert!(last.contains("connection: close"), "{last}");
}

#[tokio::test]
async fn the_connection_cap_refuses_the_excess_and_keeps_serving_the_rest() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.limits.max_connections = Some(5);
    let proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    // Events, not sleeps: the readiness probe's connections are gone, and
    // then the proxy holds exactly the five.
    assert!(
        open_becomes(&proxy, 0.0).await,
        "other connections stayed open"
    );
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    assert!(
        open_becomes(&proxy, 5.0).await,
        "the five were not all taken"
    );
    // The sixth is accepted and closed at once: it gets no answer.
    let mut extra = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /v1/covers HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), extra.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection past the cap was served: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // The five it holds are served.
    for s in &mut held {
        s.write_all(b"GET /v1/covers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    drop(held);
    let m = proxy.metrics().await.unwrap();
    assert!(
        metric_value(&m, "edgesteer_connections_refused_total") >= 1.0,
        "{m}"
    );
    // Room again once they are closed.
    let ok = wait_until(Duration::from_secs(3), || async {
        reqwest::get(proxy.url("/v1/covers"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok.is_some());
}

/// Reads until the proxy closes the connection; how long that took after
/// `since`, or `None` if it was still open after `limit`.
pub(crate) async fn closed_within(
    s: &mut TcpStream,
    since: std::time::Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout_at((since + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_at_the_head_deadline() {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    spec.limits.head_timeout_ms = Some(1500);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let before = served(&backends);

    // Slowloris: a header line every 250 ms, for ever. Each read is quick,
    // so only a deadline for the whole head closes it.
    let slow = |proxy_addr| async move {
        let mut s = TcpStream::connect(proxy_addr).await.unwrap();
        let t0 = std::time::Instant::now();
        s.write_all(b"GET /v1/covers HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if s.write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let mut buf = [0u8; 64];
            // The proxy closed: the read says so at once.
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            {
                return Some(t0.elapsed());
            }
        }
        closed_within(&mut s, t0, Duration::from_secs(1)).await
    };
    let took = slow(proxy.addr)
        .await
        .expect("slowloris held the connection for 10 s");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(3000),
        "closed after {took:?} (deadline 1.5 s)"
    );

    // A connection that sends nothing at all is closed at the deadline too.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let took = closed_within(&mut s, std::time::Instant::now(), Duration::from_secs(5))
        .await
        .expect("a silent connection was held past 5 s");
    assert!(took >= Duration::from_millis(1400), "closed after {took:?}");

    // A keep-alive connection: the first request is served, the idle wait
    // is the keep-alive timeout's (2 s here is more than the head deadline),
    // and the second request's head must come whole within the deadline
    // from its first byte.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = vec![0u8; 8192];
    s.write_all(b"GET /v1/covers HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A slow but honest head (1 s in three pieces) is served.
    for piece in [&b"GET /v1/covers HTTP/1.1\r\n"[..], b"Host: a\r\n", b"\r\n"] {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A third, slowloris this time, on the same connection: closed.
    let t0 = std::time::Instant::now();
    s.write_all(b"GET /v1/covers HTTP/1.1\r\n").await.unwrap();
    let mut closed = None;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if s.write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = Some(t0.elapsed());
            break;
        }
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
        {
            closed = Some(t0.elapsed());
            break;
        }
    }
    let took = closed.expect("a keep-alive slowloris was held for 5 s");
    assert!(took < Duration::from_millis(3000), "closed after {took:?}");

    // Two origin requests reached an origin (the honest ones), nothing else;
    // the closes are counted.
    assert_eq!(served(&backends) - before, 2);
    let m = proxy.metrics().await.unwrap();
    let closes = metric_value(&m, "edgesteer_head_timeouts_total ");
    assert!(closes >= 3.0, "edgesteer_head_timeouts_total {closes}");
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_shut_down_at_the_deadline() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    spec.limits.tls_handshake_timeout_ms = Some(1000);
    let (proxy, pki) = wd
        .start_tls_proxy(&spec, &[&["api.covergen.ai"]])
        .await
        .unwrap();
    let tls_addr = proxy.tls.unwrap();
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("api.covergen.ai", tls_addr)
        .http1_only()
        .build()
        .unwrap();
    let url = format!("https://api.covergen.ai:{}/v1/covers", tls_addr.port());
    // A client that finishes its handshake is served.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // One sends nothing, one stops inside its ClientHello: both are shut
    // down at the deadline (1 s), not at Pingora's 60 s.
    let t0 = std::time::Instant::now();
    let mut silent = TcpStream::connect(tls_addr).await.unwrap();
    let mut partial = TcpStream::connect(tls_addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    for s in [&mut silent, &mut partial] {
        let took = closed_within(s, t0, Duration::from_secs(5))
            .await
            .expect("a stalled TLS handshake was held for 5 s");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
            "closed after {took:?} (deadline 1 s)"
        );
    }
    // The served client's connection has outlived the deadline and still
    // serves; only the two stalled handshakes were counted.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let m = proxy.metrics().await.unwrap();
    let timeouts = metric_value(&m, "edgesteer_tls_handshake_timeouts_total ");
    assert_eq!(timeouts, 2.0);
}

/// Whether the proxy's count of open client connections (read on the
/// admin listener, which it does not count) reaches `n` within 5 s.
pub(crate) async fn open_becomes(proxy: &Proxy, n: f64) -> bool {
    wait_until(Duration::from_secs(5), || async {
        let text = proxy.metrics().await.unwrap_or_default();
        metric(&text, "edgesteer_downstream_connections_open") == Some(n)
    })
    .await
    .is_some()
}
