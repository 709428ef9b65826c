//! The TLS handshake deadline on the proxy's TLS listeners: a client must
//! finish its handshake within the table's `[limits]
//! tls_handshake_timeout_ms` (default 10 s), or its connection is shut down
//! and counted in `edgesteer_tls_handshake_timeouts_total`.
//!
//! Pingora runs the handshake before any of our hooks, under a fixed 60 s
//! timeout. What it does give is a callback on the raw socket just before
//! the handshake ([`PreTlsProcess`]) and the connection after it
//! (`ServerApp::process_new`, wrapped by [`crate::conn_cap`]). So:
//! - before the handshake, a watchdog task takes a duplicate of the socket
//!   (the same socket, a descriptor of our own, so it can never act on an
//!   unrelated connection that reuses the number) and the socket's cookie
//!   (unique for the socket's life);
//! - when the handshake is done, `process_new` finds the watchdog by the
//!   cookie and ends it ([`handshake_done`]);
//! - when the deadline passes first, the watchdog shuts the socket down:
//!   the handshake's next read fails and Pingora drops the connection;
//! - when Pingora drops a failed handshake itself, the watchdog sees the
//!   descriptor gone (no longer our cookie) within 250 ms and lets go of
//!   its copy, so the close reaches the client.
//!
//! The same callback applies the connection cap to TLS connections: open
//! connections plus handshakes under way may be at most `[limits]
//! max_connections`; past it a connection is refused before its handshake.

use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{SocketDigest, Stream};
use prometheus::IntGauge;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::steer::Steering;

/// How often a watchdog checks that Pingora still holds the socket.
const POLL: Duration = Duration::from_millis(250);

/// The watchdogs of handshakes under way, by socket cookie.
pub struct HandshakeDeadline {
    steer: Arc<Steering>,
    pending: Arc<DashMap<u64, AbortHandle>>,
    /// Connections past their handshake (counted by [`crate::conn_cap`]).
    open: Arc<AtomicUsize>,
    /// `edgesteer_tls_handshakes_in_progress`: the watchdogs in `pending`
    /// (the connection cap counts them with the open connections).
    in_progress: Option<IntGauge>,
}

/// Registers `edgesteer_tls_handshakes_in_progress` with the proxy's
/// metrics (a second registration in one process, as in tests, is
/// logged and the gauge still counts).
fn in_progress_gauge(steer: &Steering) -> Option<IntGauge> {
    let gauge = IntGauge::new(
        "edgesteer_tls_handshakes_in_progress",
        "TLS handshakes under way on the proxy's listeners (they count against [limits] max_connections).",
    )
    .ok()?;
    if let Err(e) = steer.metrics.registry.register(Box::new(gauge.clone())) {
        tracing::debug!(error = %e, "TLS handshake gauge not registered");
    }
    Some(gauge)
}

/// Removes a handshake's watchdog entry, counting it out of the gauge
/// only if it was still there (the watchdog and the finished handshake
/// may both try).
fn forget(
    pending: &DashMap<u64, AbortHandle>,
    gauge: &Option<IntGauge>,
    cookie: u64,
) -> Option<AbortHandle> {
    let (_, watchdog) = pending.remove(&cookie)?;
    if let Some(g) = gauge {
        g.dec();
    }
    Some(watchdog)
}

impl HandshakeDeadline {
    pub fn new(steer: Arc<Steering>) -> Arc<HandshakeDeadline> {
        Arc::new(HandshakeDeadline {
            in_progress: in_progress_gauge(&steer),
            steer,
            pending: Arc::new(DashMap::new()),
            open: Arc::default(),
        })
    }

    /// The count of open connections, shared with the connection cap.
    pub fn open(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Handshakes under way (a shutdown waits for them as for requests).
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// The handshake of `stream` is done: its watchdog ends (a plaintext
    /// stream has none).
    pub fn handshake_done(&self, stream: &Stream) {
        // Plaintext connections never touch the map.
        if stream.get_ssl_digest().is_none() {
            return;
        }
        let cookie = stream
            .get_socket_digest()
            .and_then(|d| d.socket_cookie().ok());
        if let Some(watchdog) = cookie.and_then(|c| forget(&self.pending, &self.in_progress, c)) {
            watchdog.abort();
        }
    }
}

#[async_trait]
impl PreTlsProcess for HandshakeDeadline {
    async fn process(&self, stream: &mut L4Stream) -> pingora_core::Result<()> {
        let (timeout, max) = {
            let limits = &self.steer.peek().table.limits;
            (
                limits.tls_handshake_timeout,
                limits.max_connections as usize,
            )
        };
        // The connection cap counts handshakes under way: a connection past
        // it is refused here, before any TLS work (and before it holds a
        // second descriptor and rustls state for the handshake's length).
        let busy = self.open.load(Ordering::Relaxed) + self.pending.len();
        if busy >= max {
            self.steer.metrics.connections_refused.inc();
            tracing::debug!(
                open = busy,
                max,
                "connection cap reached; closing the new connection before its TLS handshake"
            );
            return Err(pingora_core::Error::explain(
                pingora_core::ErrorType::ConnectRefused,
                "the connection cap ([limits] max_connections) is reached",
            ));
        }
        let fd = stream.as_raw_fd();
        let Ok(cookie) = SocketDigest::from_raw_fd(fd).socket_cookie() else {
            return Ok(()); // no cookie (not Linux): Pingora's own 60 s applies
        };
        // SAFETY: `fd` is the descriptor of the stream we hold `&mut` for
        // this call, so it is open while it is duplicated; the duplicate is
        // our own descriptor of the same socket.
        #[allow(unsafe_code)]
        let own = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
        let Ok(own) = own else {
            return Ok(());
        };
        let socket = std::net::TcpStream::from(own);
        let pending = self.pending.clone();
        let gauge = self.in_progress.clone();
        let closed = self.steer.metrics.tls_handshake_timeouts.clone();
        let watchdog = tokio::spawn(async move {
            let deadline = Instant::now() + timeout;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                tokio::time::sleep((deadline - now).min(POLL)).await;
                // Pingora dropped the connection (a failed handshake): let
                // go of our copy now, so the close reaches the client.
                if SocketDigest::from_raw_fd(fd).socket_cookie().ok() != Some(cookie) {
                    forget(&pending, &gauge, cookie);
                    return;
                }
            }
            forget(&pending, &gauge, cookie);
            let _ = socket.shutdown(Shutdown::Both);
            closed.inc();
            tracing::debug!(
                timeout_ms = timeout.as_millis() as u64,
                "TLS handshake not finished within the deadline; connection shut down"
            );
        });
        self.pending.insert(cookie, watchdog.abort_handle());
        if let Some(g) = &self.in_progress {
            g.inc();
        }
        Ok(())
    }
}
