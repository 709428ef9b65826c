//! Who a failure is blamed on, and what is retried (issue 26): a request
//! that was never sent goes elsewhere whatever the retry budget says; an
//! origin that resets during an upload is the origin's fault.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use edgesteer::demo::{spawn_backend, Identity};
use edgesteer_tests::*;

fn table(backends: &[SocketAddr], consecutive_failures: u32) -> edgesteer_config::TableSpec {
    let list: Vec<String> = backends
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    let text = format!(
        "default_region = \"r\"\n[health]\npath = \"/health\"\ninterval_ms = 60000\ntimeout_ms = 500\n\
         [retry]\nmax_attempts = 3\n[outlier]\nconsecutive_failures = {consecutive_failures}\nconsecutive_5xx = 0\n\
         [release]\nsticky_keys = [\"header:x-api-key\"]\n[regions.r]\nbackends = [{}]\n",
        list.join(", ")
    );
    edgesteer_config::parse::from_toml(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_sent_go_elsewhere_whatever_the_retry_budget() {
    let _heavy = heavy().await;
    let id = |b: &str| Identity {
        region: "r".into(),
        backend: b.into(),
        track: "stable".into(),
    };
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let alive = spawn_backend(id("alive"), bind).await.unwrap();
    let mut dead = spawn_backend(id("dead"), bind).await.unwrap();
    let wd = Workdir::new().unwrap();
    let proxy = wd
        .start_proxy(&table(&[alive.addr, dead.addr], 0), false, vec![])
        .await
        .unwrap();
    // Both probed healthy; the next probe is a minute away, so the dead
    // one stays in rotation and every request hashed to it fails to
    // connect first.
    let client = reqwest::Client::new();
    let url = proxy.url("/v1/covers");
    let r = client.get(&url).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    dead.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 100 clients at once, 5 requests each, each with its own key.
    let mut tasks = Vec::new();
    for c in 0..100 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in 0..5 {
                let r = client
                    .get(&url)
                    .header("x-api-key", format!("user-{c}-{i}"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => failed.push(r.status().as_u16()),
                    Err(_) => failed.push(0),
                }
            }
            failed
        }));
    }
    let mut failed = Vec::new();
    for t in tasks {
        failed.extend(t.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of 500 failed: {failed:?}",
        failed.len()
    );
    let m = proxy.metrics().await.unwrap();
    let fails = metric_value(&m, "edgesteer_upstream_connect_failures_total");
    assert!(
        fails >= 100.0,
        "about half the keys hash to the dead backend: {fails}"
    );
}

/// A backend that answers its health checks and, for anything else,
/// reads the head and 8 KiB of the body, then resets the connection.
async fn resetting_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.starts_with(b"GET /health") && got.ends_with(b"\r\n\r\n") {
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        let _ = s.write_all(ok).await;
                        got.clear();
                    } else if got.len() > 8 * 1024 {
                        // A reset: the socket closed with data unread.
                        drop(s);
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_origin_that_resets_an_upload_is_charged_for_it() {
    let wd = Workdir::new().unwrap();
    let origin = resetting_backend().await;
    let proxy = wd
        .start_proxy(&table(&[origin], 5), false, vec![])
        .await
        .unwrap();
    for _ in 0..2 {
        // 100 KiB of a 256 KiB upload, the rest still to come when the
        // origin resets: the origin failed, not the client.
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let head = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 262144\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![b'x'; 100 * 1024]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no answer to an upload the origin reset")
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    }
    let health = proxy.health().await.unwrap();
    let ep = &health["regions"][0]["backends"][0]["endpoints"][0];
    assert_eq!(ep["passive_failures"], 2, "both resets were charged: {ep}");
}
