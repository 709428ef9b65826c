//! Vendor patch 12 (vendor/README.md): what an accepted connection's task
//! holds for the connection's whole life. Pingora spawned one future per
//! connection that ran the handshake and then the application, so the task
//! was as large as the handshake's state (and the stream it moved out of)
//! for as long as the connection lived, idle or stalled: about 3 KiB of a
//! slow reader's heap. The handshake now runs in a box of its own that is
//! freed when it ends.
//!
//! A test binary of its own: it counts the process's live heap bytes
//! through a global allocator (`common/counting.rs`), which tests running
//! beside it would move.

#![allow(clippy::unwrap_used)]
#[path = "common/counting.rs"]
mod counting;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_core::services::Service as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// An application that holds each connection until the client closes it,
/// counting the connections it holds.
struct Hold {
    holding: Arc<AtomicUsize>,
}

#[async_trait]
impl ServerApp for Hold {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.holding.fetch_add(1, Ordering::SeqCst);
        let mut byte = [0u8; 1];
        let _ = stream.read(&mut byte).await;
        self.holding.fetch_sub(1, Ordering::SeqCst);
        None
    }

    async fn cleanup(&self) {}
}

/// Waits until the app holds `n` connections, or fails naming what it holds.
async fn until_holding(holding: &AtomicUsize, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while holding.load(Ordering::SeqCst) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service holds {} connections, not {n}",
            holding.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The heap an idle plaintext connection holds in Pingora's listening
/// service: its task, the accepted stream (with its 1,460-byte write
/// buffer), the application's future. Unoptimised (as tests build), with
/// the handshake's state inside every connection's task it was 4,578
/// bytes; with the handshake boxed for its own length, 3,042. The figures
/// are those of the debug build the test suite runs (`cargo test`), where
/// futures are laid out larger; a toolchain that lays them out otherwise
/// moves both.
#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_holds_no_handshake_state() {
    const CONNS: usize = 200;
    const MAX: isize = 3600;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let holding = Arc::new(AtomicUsize::new(0));
    let app = Hold {
        holding: holding.clone(),
    };
    let mut service = Service::new("held".to_string(), app);
    // As the proxy listens: no 64 KiB read buffer per connection (proxy/src/server.rs).
    let config = ListenerConfig::tcp(format!("127.0.0.1:{port}"))
        .l4_buffer(L4BufferSettings::default().read(0));
    service.add_listener(config);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move {
        service.start_service(None, shutdown, 1).await;
    });

    // Warm up: the runtime's and the listener's first allocations, once
    // the service listens (it runs when this task yields).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("the service never listened: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    until_holding(&holding, 1).await;

    let before = counting::live();
    // Clients on std sockets: they hold no heap of the runtime's (the
    // listen backlog takes them until the service accepts).
    let clients: Vec<_> = (0..CONNS)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    until_holding(&holding, CONNS + 1).await;
    let per_conn = (counting::live() - before) / CONNS as isize;

    drop(clients);
    drop(first);
    until_holding(&holding, 0).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    assert!(
        per_conn <= MAX,
        "an idle connection holds {per_conn} bytes of heap (at most {MAX}): the connection's \
         task carries the handshake's state for the connection's life"
    );
}
