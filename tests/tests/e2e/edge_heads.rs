//! Heads the intake must read exactly as Pingora does (issue 26): heads
//! that Pingora would finish only later (leading empty lines, a target
//! Pingora escapes) meet the head deadline; HTTP/1.0 is closed unless it
//! asks for keep-alive; `Content-Length` is one number; `Host` is required
//! in HTTP/1.1, must be `host[:port]`, and an absolute-form target's host
//! meets its pin.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use edgesteer_tests::*;

use crate::edge::served;
use crate::edge_conns::closed_within;

/// Sends `start`, then one header line every 250 ms (or, with `empty`,
/// one more empty line); how long until the proxy closed the connection
/// (`None`: still open after 6 s).
async fn trickle(addr: std::net::SocketAddr, start: &[u8], empty: bool) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    s.write_all(start).await.unwrap();
    for i in 0..24 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let line = if empty {
            "\r\n".to_string()
        } else {
            format!("X-Slow-{i}: x\r\n")
        };
        if s.write_all(line.as_bytes()).await.is_err() {
            return Some(t0.elapsed());
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
        {
            return Some(t0.elapsed());
        }
    }
    closed_within(&mut s, t0, Duration::from_secs(1)).await
}

/// Writes `req` on a new connection and reads until the proxy closes it
/// (at most 5 s): the whole answer, and whether it was closed.
async fn exchange(addr: std::net::SocketAddr, req: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

#[tokio::test]
async fn heads_pingora_would_finish_later_meet_the_head_deadline() {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    spec.limits.head_timeout_ms = Some(1500);
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let before = served(&backends);
    for (start, empty) in [
        (
            &b"\r\n\r\nGET /v1/covers HTTP/1.1\r\nHost: a\r\n"[..],
            false,
        ),
        (b"GET /v1/covers a HTTP/1.1\r\nHost: a\r\n", false),
        (b"\r\n\r\n", true),
    ] {
        let name = String::from_utf8_lossy(start).escape_debug().to_string();
        let took = trickle(proxy.addr, start, empty)
            .await
            .unwrap_or_else(|| panic!("{name}: held past 6 s (deadline 1.5 s)"));
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_millis(3000),
            "{name}: closed after {took:?} (deadline 1.5 s)"
        );
    }
    assert_eq!(
        served(&backends),
        before,
        "no trickled head reached an origin"
    );
    let m = proxy.metrics().await.unwrap();
    assert_eq!(
        metric_value(&m, "edgesteer_head_timeouts_total "),
        3.0,
        "each trickled head was closed at the head deadline"
    );
}

#[tokio::test]
async fn empty_lines_before_a_request_are_ignored_and_bad_heads_refused() {
    let wd = Workdir::new().unwrap();
    let (spec, backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let (answer, _) = exchange(
        proxy.addr,
        b"\r\n\r\nGET /v1/covers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let before = served(&backends);
    // Not yet whole, and no byte can make them a head: refused by the
    // intake at once, not waited for.
    for bad in [
        &b" GET /v1/covers HTTP/1.1\r\nHost: a\r\n"[..],
        b"GET /v1/covers\r\nHost: a\r\n",
        b"\r\n\rGET / HTTP/1.1\r\n",
    ] {
        let t0 = Instant::now();
        let (answer, closed) = exchange(proxy.addr, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"bad_request\""), "{answer}");
        assert!(
            closed && t0.elapsed() < Duration::from_secs(3),
            "refused and closed"
        );
    }
    // Whole and bad: 400 (Pingora's parser refuses them as it reads them).
    for bad in [
        &b" GET /v1/covers HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /v1/covers\r\nHost: a\r\n\r\n",
    ] {
        let (answer, _) = exchange(proxy.addr, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    assert_eq!(served(&backends), before);
}

#[tokio::test]
async fn http_1_0_is_kept_alive_only_when_it_asks() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let t0 = Instant::now();
    let (answer, closed) =
        exchange(proxy.addr, b"GET /v1/covers HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed && t0.elapsed() < Duration::from_secs(2),
        "held {:?}",
        t0.elapsed()
    );
    assert!(
        !answer.to_ascii_lowercase().contains("keep-alive"),
        "{answer}"
    );

    // Asked for: two requests on one connection.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = vec![0u8; 8192];
    for _ in 0..2 {
        s.write_all(b"GET /v1/covers HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn content_length_lists_and_signs_are_refused_at_the_edge() {
    let wd = Workdir::new().unwrap();
    let (spec, backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let before = served(&backends);
    for length in ["3, 3", "+3", "3 3", "0x3"] {
        let req =
            format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\nabc");
        let (answer, _) = exchange(proxy.addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{length}: {answer}");
        assert!(answer.contains("Content-Length"), "{length}: {answer}");
    }
    assert_eq!(
        served(&backends),
        before,
        "no such request reached an origin"
    );
    let (answer, _) = exchange(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The host a pin is matched against cannot be dodged by how the request
/// writes it: an HTTP/1.0 absolute-form target without `Host` meets its
/// pin (421 for a US client of the CN pin), and an HTTP/1.1 request
/// without `Host`, or with one that is not `host[:port]`, is 400 naming
/// the header, never served as "no host". Each once reached us-east.
#[tokio::test]
async fn a_host_is_read_however_it_is_written_or_refused() {
    let wd = Workdir::new().unwrap();
    let (spec, backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let us = sample_ip("US");
    let before = served(&backends);
    let (answer, _) = exchange(
        proxy.addr,
        format!(
            "GET http://api-cn.covergen.ai/v1/covers HTTP/1.0\r\nX-Forwarded-For: {us}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    for head in [
        format!("GET http://api-cn.covergen.ai/v1/covers HTTP/1.1\r\nX-Forwarded-For: {us}\r\n\r\n"),
        format!("GET /v1/covers HTTP/1.1\r\nHost: api-cn.covergen.ai:x\r\nX-Forwarded-For: {us}\r\n\r\n"),
        format!("GET /v1/covers HTTP/1.1\r\nHost: api-cn.covergen.ai:443:443\r\nX-Forwarded-For: {us}\r\n\r\n"),
    ] {
        let (answer, closed) = exchange(proxy.addr, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head}: {answer}");
        assert!(answer.contains("\"header\":\"host\""), "{head}: {answer}");
        assert!(closed, "{head}: closed after the refusal");
    }
    assert_eq!(served(&backends), before, "nothing reached an origin");
    // Written plainly, the same client is served.
    let (answer, _) = exchange(
        proxy.addr,
        format!("GET /v1/covers HTTP/1.1\r\nHost: api.covergen.ai:443\r\nX-Forwarded-For: {us}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
