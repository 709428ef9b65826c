//! The listener against a client that pipelines requests and never reads
//! the answers: the connection must not be held forever.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use crate::{serve_with, App, ConnStats, Limits, Transport};

/// Answers every request with 256 KiB, so unread answers fill the
/// socket buffers fast.
#[derive(Clone)]
struct Big;

impl App for Big {
    type Body = String;
    async fn call(&mut self, _req: Request<Incoming>) -> Response<String> {
        Response::new("x".repeat(256 * 1024))
    }
}

async fn start(limits: Limits) -> (SocketAddr, Arc<ConnStats>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnStats::default());
    let transport = Transport {
        name: "test",
        tls: None,
        limits,
    };
    let counted = stats.clone();
    tokio::spawn(async move {
        serve_with(
            listener,
            Big,
            transport,
            counted,
            || {},
            std::future::pending(),
        )
        .await
    });
    (addr, stats)
}

/// Connects with a small receive buffer, pipelines requests until the
/// server stops taking them, and never reads. Returns when the
/// connection is counted open.
async fn pipeline_and_never_read(
    addr: SocketAddr,
    stats: &ConnStats,
) -> tokio::task::JoinHandle<()> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let writer = tokio::spawn(async move {
        let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
        // Ends when the server closes the connection (or never, if it
        // stops reading and holds it: then the test's deadline fails).
        while stream.write_all(&req).await.is_ok() {}
        // Keep the socket open (unread) until the test ends.
        std::future::pending::<()>().await;
    });
    let t = Instant::now();
    while stats.open.load(Relaxed) == 0 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stats.open.load(Relaxed),
        1,
        "the connection was not accepted"
    );
    writer
}

/// Waits up to `limit` for no open connection; how long it took.
async fn closed_within(stats: &ConnStats, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if stats.open.load(Relaxed) == 0 {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// A listener with `limits`, a client that pipelines and never reads:
/// how long until the listener closed it (`None`: still open at `limit`).
async fn never_reading_client_closed_within(limits: Limits, limit: Duration) -> Option<Duration> {
    let (addr, stats) = start(limits).await;
    let client = pipeline_and_never_read(addr, &stats).await;
    let took = closed_within(&stats, limit).await;
    client.abort();
    took
}

#[tokio::test]
async fn an_idle_deadline_closes_a_connection_whose_client_never_reads() {
    // The write timeout is out of reach: only the idle close can end it.
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        grace_period: Duration::from_secs(1),
        write_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    // idle (1 s, checked every 0.5 s) + grace (1 s), with room for a slow host.
    let took = never_reading_client_closed_within(limits, Duration::from_secs(6)).await;
    assert!(
        took.is_some(),
        "a client that pipelines and never reads held the connection past idle + grace"
    );
}

#[tokio::test]
async fn a_write_that_makes_no_progress_times_out() {
    // Idle and grace are out of reach: only the write timeout can end it.
    let limits = Limits {
        idle_timeout: Duration::from_secs(3600),
        header_read_timeout: Duration::from_secs(3600),
        grace_period: Duration::from_secs(3600),
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let took = never_reading_client_closed_within(limits, Duration::from_secs(6)).await;
    assert!(
        took.is_some(),
        "a write stalled on a client that never reads did not time out"
    );
}
