//! Hostname backends (issue 33): a retry tries the backend's other
//! address. `svc.test` resolves (through a DNS stub on loopback, given to
//! the proxy with `--resolver`) to two addresses; one resets every
//! request after accepting it (so TCP probes pass and passive ejection is
//! off), the other answers. Every GET is answered 200, whichever address
//! its hash picked first, and the resetting address was tried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgesteer::demo::{spawn_backend, Identity};
use edgesteer_tests::*;

/// Answers every A query for any name with `addrs` (TTL 1); AAAA and the
/// rest with no records.
async fn dns_stub(addrs: Vec<[u8; 4]>) -> SocketAddr {
    dns_stub_until(addrs, Arc::default()).await
}

/// [`dns_stub`] that answers NXDOMAIN to everything once `gone` is set.
async fn dns_stub_until(addrs: Vec<[u8; 4]>, gone: Arc<AtomicBool>) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let q = &buf[..n];
            // Header (12) and the question: the name, type, class.
            let Some(end) = q[12..].iter().position(|&b| b == 0).map(|i| 12 + i + 5) else {
                continue;
            };
            let Some(question) = q.get(12..end) else {
                continue;
            };
            let qtype = u16::from_be_bytes([q[end - 4], q[end - 3]]);
            let nx = gone.load(Ordering::Relaxed);
            let answers: &[[u8; 4]] = if qtype == 1 && !nx { &addrs } else { &[] };
            let mut r = vec![
                q[0],
                q[1],
                0x81,
                if nx { 0x83 } else { 0x80 },
                0,
                1,
                0,
                answers.len() as u8,
                0,
                0,
                0,
                0,
            ];
            r.extend_from_slice(question);
            for a in answers {
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
                r.extend_from_slice(a);
            }
            let _ = sock.send_to(&r, peer).await;
        }
    });
    at
}

/// Accepts connections on `addr` and resets each once a request arrives.
async fn resetter(addr: SocketAddr, seen: Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                // A probe connects and leaves; a request sends bytes.
                if let Ok(n) = s.try_read(&mut b) {
                    let _ = n;
                }
                s.readable().await.ok();
                if s.try_read(&mut b).is_ok_and(|n| n > 0) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                // Linger 0: the close is a reset (and, with 0, dropping
                // does not block, which is what the deprecation is about).
                #[allow(deprecated)]
                let _ = s.set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
}

/// A proxy whose one region `r` has the backend `svc.test:PORT`, resolved
/// through `stub`, TCP-probed every 500 ms; `health` adds to `[health]`,
/// `extra` adds sections.
async fn on_svc_test(port: u16, health: &str, extra: &str, stub: SocketAddr) -> (Workdir, Proxy) {
    let text = format!(
        "default_region = \"r\"\n[health]\nkind = \"tcp\"\ninterval_ms = 500\ntimeout_ms = 300\n\
         {health}{extra}[regions.r]\nbackends = [{{ address = \"svc.test:{port}\" }}]\n"
    );
    let spec = edgesteer_config::parse::from_toml(&text).unwrap();
    let wd = Workdir::new().unwrap();
    let proxy = wd
        .start_proxy(&spec, false, vec!["--resolver".into(), stub.to_string()])
        .await
        .unwrap();
    (wd, proxy)
}

#[tokio::test]
async fn a_retry_tries_the_backends_other_address() {
    let _heavy = heavy().await;
    let port = free_port();
    let good: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bad: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let id = Identity {
        region: "r".into(),
        backend: "svc".into(),
        track: "stable".into(),
    };
    let _backend = spawn_backend(id, good).await.unwrap();
    let resets = Arc::new(AtomicU64::new(0));
    resetter(bad, resets.clone()).await;
    let stub = dns_stub(vec![[127, 0, 0, 2], [127, 0, 0, 1]]).await;
    let extra =
        "[retry]\nmax_attempts = 3\n[outlier]\nconsecutive_failures = 0\nconsecutive_5xx = 0\n\
         [release]\nsticky_keys = [\"header:x-api-key\"]\n";
    let (_wd, proxy) = on_svc_test(port, "", extra, stub).await;
    // Both addresses resolved and probed (TCP connects pass on both).
    let both = wait_until(Duration::from_secs(5), || async {
        let h = proxy.health().await.unwrap_or_default().to_string();
        h.contains("127.0.0.1:") && h.contains("127.0.0.2:")
    })
    .await;
    assert!(both.is_some(), "{}", proxy.health().await.unwrap());
    let client = reqwest::Client::new();
    for i in 0..40 {
        let r = client
            .get(proxy.url("/v1/covers"))
            .header("x-api-key", format!("key-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}: {:?}", r.text().await);
    }
    assert!(
        resets.load(Ordering::Relaxed) > 0,
        "no request went to the resetting address first: the retry path was not exercised"
    );
}

/// A name that stops resolving (NXDOMAIN) loses its last addresses after
/// `[health] dns_forget_after_ms` (issue 33: they were kept forever, so a
/// recycled IP kept getting traffic); until then they keep serving.
#[tokio::test]
async fn a_name_gone_from_dns_loses_its_addresses_after_the_set_time() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let id = Identity {
        region: "r".into(),
        backend: "svc".into(),
        track: "stable".into(),
    };
    let _backend = spawn_backend(id, addr).await.unwrap();
    let gone = Arc::new(AtomicBool::new(false));
    let stub = dns_stub_until(vec![[127, 0, 0, 1]], gone.clone()).await;
    let (_wd, proxy) = on_svc_test(port, "dns_forget_after_ms = 2000\n", "", stub).await;
    let client = reqwest::Client::new();
    let status = || async {
        client
            .get(proxy.url("/v1/covers"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let up = wait_until(Duration::from_secs(5), || async { status().await == 200 }).await;
    assert!(up.is_some(), "{}", proxy.health().await.unwrap());
    gone.store(true, Ordering::Relaxed);
    let went = std::time::Instant::now();
    // Within the 2 s the last addresses keep serving ...
    assert_eq!(status().await, 200);
    // ... and after it (plus one 5 s retry of the failed lookup) they are
    // gone: the region has no address left, and fails closed.
    let forgotten = wait_until(Duration::from_secs(12), || async { status().await == 503 }).await;
    assert!(forgotten.is_some(), "{}", proxy.health().await.unwrap());
    assert!(
        went.elapsed() >= Duration::from_millis(2000),
        "forgotten after {:?}, before the 2 s",
        went.elapsed()
    );
    let health = proxy.health().await.unwrap().to_string();
    assert!(!health.contains(&format!("127.0.0.1:{port}")), "{health}");
}
