//! GeoDNS under abuse and edge failures (issue 27): a flood from one /24
//! is rate limited with slip, TCP connections are capped and idle ones
//! closed (and a DNS-serving proxy exits on SIGTERM), and edges failing
//! their health URL leave the answers and come back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgesteer_tests::*;

use super::geodns::{answers, dig, dns_proxy, raw_query};

#[tokio::test]
async fn a_flood_from_one_subnet_is_rate_limited_with_slip() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    let rrl = &mut spec.dns.as_mut().unwrap().rrl;
    rrl.responses_per_s = Some(10);
    rrl.burst = Some(10);
    rrl.slip = Some(2);
    let (proxy, dns) = dns_proxy(&wd, &spec).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns).await.unwrap();
    let sent = 200u16;
    let start = Instant::now();
    for id in 0..sent {
        sock.send(&raw_query(id, "api.covergen.ai")).await.unwrap();
    }
    let (mut full, mut truncated) = (0u32, 0u32);
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let flags = u16::from_be_bytes([buf[2], buf[3]]);
        let ancount = u16::from_be_bytes([buf[6], buf[7]]);
        if flags & 0x0200 != 0 {
            assert_eq!(ancount, 0, "a slipped answer carries no records");
            truncated += 1;
        } else if n > 12 {
            full += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The burst, plus the rate over the time taken, and no more.
    let bound = 10.0 + 10.0 * secs + 1.0;
    assert!(
        f64::from(full) <= bound && full >= 10,
        "{full} full answers in {secs:.2}s (bound {bound:.0})"
    );
    let limited = u32::from(sent) - full;
    assert!(
        truncated * 2 >= limited - 2 && truncated * 2 <= limited + 2,
        "slip 2: {truncated} TC of {limited} limited"
    );
    let m = proxy.metrics().await.unwrap();
    assert_eq!(
        metric_value(&m, r#"edgesteer_dns_rrl_total{action="slip"}"#),
        f64::from(truncated)
    );
    assert_eq!(
        metric_value(&m, r#"edgesteer_dns_rrl_total{action="drop"}"#),
        f64::from(limited - truncated)
    );
    // TCP is not limited: a resolver told to retry there gets its answer.
    let out = dig(dns, &["api.covergen.ai", "A", "+tcp"]);
    assert_eq!(answers(&out).len(), 2, "{out}");
}

/// An HTTP health endpoint that answers 200 while `up`, else 503.
async fn health_endpoint(up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let up = up.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let status = if up.load(std::sync::atomic::Ordering::Relaxed) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn edges_failing_their_health_url_leave_the_answers_and_come_back() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let health = health_endpoint(up.clone()).await;
    spec.dns
        .as_mut()
        .unwrap()
        .regions
        .get_mut("us-east")
        .unwrap()
        .health_url = Some(format!("http://{health}/healthz"));
    let (_proxy, dns) = dns_proxy(&wd, &spec).await;
    let us = ["api.covergen.ai", "A", "+subnet=3.3.3.0/24"];
    let in_us_east = |out: &str| answers(out).iter().any(|r| r.3 == "198.51.100.10");
    assert!(in_us_east(&dig(dns, &us)), "{}", dig(dns, &us));
    // Probed every 2 s; 3 failures mark the edges down.
    up.store(false, std::sync::atomic::Ordering::Relaxed);
    let gone = wait_until(Duration::from_secs(10), || async {
        answers(&dig(dns, &us))
            .iter()
            .any(|r| r.3 == "198.51.100.20")
    })
    .await;
    assert!(
        gone.is_some(),
        "still us-east 10 s after its edges failed: {}",
        dig(dns, &us)
    );
    assert!(
        answers(&dig(dns, &us)).iter().all(|r| r.1 == 15),
        "degraded TTL"
    );
    // 2 successes bring them back.
    up.store(true, std::sync::atomic::Ordering::Relaxed);
    let back = wait_until(Duration::from_secs(8), || async {
        in_us_east(&dig(dns, &us))
    })
    .await;
    assert!(
        back.is_some(),
        "us-east's edges did not come back: {}",
        dig(dns, &us)
    );
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = [
        "--dns-listen",
        &dns.to_string(),
        "--dns-tcp-max-connections",
        "4",
        "--dns-tcp-idle-ms",
        "500",
    ];
    let proxy = wd
        .start_proxy(&spec, true, args.iter().map(|a| a.to_string()).collect())
        .await
        .unwrap();
    // Four held connections fill the cap (each sends one query, so it is
    // surely accepted and counted).
    let mut held = Vec::new();
    for i in 0..4u16 {
        let mut s = tokio::net::TcpStream::connect(dns).await.unwrap();
        let q = raw_query(i, "api.covergen.ai");
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&q).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut body = vec![0u8; usize::from(len)];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(&body[..2], &i.to_be_bytes());
        held.push(s);
    }
    // A fifth is closed at once, unanswered.
    let mut fifth = tokio::net::TcpStream::connect(dns).await.unwrap();
    let q = raw_query(9, "api.covergen.ai");
    let _ = fifth.write_all(&(q.len() as u16).to_be_bytes()).await;
    let _ = fifth.write_all(&q).await;
    let mut b = [0u8; 2];
    let got = tokio::time::timeout(Duration::from_secs(2), fifth.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(got, Ok(0) | Err(_)),
        "the fifth connection was served: {got:?}"
    );
    let m = proxy.metrics().await.unwrap();
    assert_eq!(metric_value(&m, "edgesteer_dns_tcp_refused_total"), 1.0);
    // Idle past 500 ms: the held ones are closed, and the cap is free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for s in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "an idle connection stayed open: {r:?}"
        );
    }
    let out = dig(dns, &["api.covergen.ai", "A", "+tcp"]);
    assert_eq!(answers(&out).len(), 2, "{out}");
    // SIGTERM: the DNS threads stop with the rest, and the process exits.
    let mut proxy = proxy;
    let start = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}
