//! The connection cap: the proxy's listeners hold at most the table's
//! `[limits] max_connections` client connections at once, TLS handshakes
//! under way included. A connection past it is closed before its first
//! byte is read: a plaintext one when Pingora hands it over, a TLS one
//! before its handshake (in [`crate::tls_deadline`], Pingora's pre-TLS
//! callback). Each is counted in `edgesteer_connections_refused_total`
//! and logged at debug; the ones already open are served as before. The
//! limit is read from the live table for every connection, so a pushed
//! table changes it without a restart.
//!
//! Pingora has no such hook in its accept loop, so this wraps the proxy's
//! `ServerApp`: `process_new` spans a whole connection (every keep-alive
//! request of an HTTP/1.1 connection, every stream of an h2 one), which is
//! exactly what the count must cover. A TLS connection admitted before its
//! handshake is not refused again here.
//!
//! An admitted HTTP/1 connection runs [`crate::conn_loop`]; HTTP/2 by ALPN
//! goes to Pingora's own server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::time::Instant;

use crate::conn_loop::Conn;
use crate::intake::Closing;
use crate::proxy::EdgeProxy;
use crate::steer::Steering;
use crate::tls_deadline::HandshakeDeadline;

/// The proxy's `ServerApp` behind the cap.
pub struct Capped {
    inner: Arc<HttpProxy<EdgeProxy>>,
    steer: Arc<Steering>,
    /// Open connections (shared with the TLS listeners' pre-handshake cap).
    open: Arc<AtomicUsize>,
    /// Set at `cleanup`: connections waiting for a request close.
    closing: Closing,
}

impl Capped {
    pub fn new(
        inner: HttpProxy<EdgeProxy>,
        steer: Arc<Steering>,
        handshakes: Arc<HandshakeDeadline>,
    ) -> Capped {
        Capped {
            inner: Arc::new(inner),
            steer,
            open: handshakes.open(),
            closing: Closing::default(),
        }
    }
}

/// Counts a connection open until dropped.
struct Held<'a>(&'a Capped);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.steer.metrics.connections_open.dec();
    }
}

#[async_trait]
impl ServerApp for Capped {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        crate::heartbeat::start();
        // A TLS connection is here: its handshake finished in time, and
        // the cap admitted it before the handshake.
        let tls = session.get_ssl_digest().is_some();
        let accepted = Instant::now();
        let max = self.steer.peek().table.limits.max_connections as usize;
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        self.steer.metrics.connections_open.inc();
        let held = Held(self);
        if !tls && before >= max {
            self.steer.metrics.connections_refused.inc();
            tracing::debug!(
                open = before,
                max,
                "connection cap reached; closing the new connection"
            );
            drop(held);
            return None;
        }
        let http1 = match session.selected_alpn_proto() {
            None | Some(ALPN::H1) => true,
            Some(_) => false,
        };
        if http1 && self.steer.edge_checks {
            let conn = Conn {
                inner: &self.inner,
                steer: &self.steer,
                closing: &self.closing,
                shutdown,
            };
            conn.http1(session, accepted).await;
        } else {
            // HTTP/2 by ALPN (or the benchmark switch that prices the edge
            // checks): Pingora's own loop.
            ServerApp::process_new(&self.inner, session, shutdown).await;
        }
        drop(held);
        None
    }

    async fn cleanup(&self) {
        self.closing.close();
        self.inner.cleanup().await;
    }
}
