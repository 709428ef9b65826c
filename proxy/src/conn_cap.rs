//! The connection cap: the proxy's listeners hold at most the table's
//! `[limits] max_connections` client connections at once. A connection
//! past it is closed as soon as it is accepted (before its TLS handshake
//! or first byte is read), counted in `edgesteer_connections_refused_total`
//! and logged at debug; the ones already open are served as before. The
//! limit is read from the live table for every connection, so a pushed
//! table changes it without a restart.
//!
//! Pingora has no such hook in its accept loop, so this wraps the proxy's
//! `ServerApp`: `process_new` spans a whole connection (every keep-alive
//! request of an HTTP/1.1 connection, every stream of an h2 one), which is
//! exactly what the count must cover. The same wrapper puts the client's
//! stream behind the request-head deadline ([`crate::head_deadline`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;

use crate::head_deadline::HeadDeadline;
use crate::proxy::EdgeProxy;
use crate::steer::Steering;
use crate::tls_deadline::HandshakeDeadline;

/// The proxy's `ServerApp` behind the cap.
pub struct Capped {
    inner: Arc<HttpProxy<EdgeProxy>>,
    steer: Arc<Steering>,
    /// The TLS listeners' handshake watchdogs, ended here.
    handshakes: Arc<HandshakeDeadline>,
    open: AtomicUsize,
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
            handshakes,
            open: AtomicUsize::new(0),
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
        // A TLS connection is here: its handshake finished in time.
        self.handshakes.handshake_done(&session);
        // Copied out: the snapshot is not held for the connection's life.
        let (max, head_timeout) = {
            let snap = self.steer.current();
            let l = &snap.table.limits;
            (l.max_connections as usize, l.head_timeout)
        };
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        self.steer.metrics.connections_open.inc();
        let held = Held(self);
        if before >= max {
            self.steer.metrics.connections_refused.inc();
            tracing::debug!(
                open = before,
                max,
                "connection cap reached; closing the new connection"
            );
            drop(held);
            return None;
        }
        let session = if self.steer.edge_checks {
            HeadDeadline::wrap(
                session,
                head_timeout,
                self.steer.metrics.head_timeouts.clone(),
            )
        } else {
            session
        };
        let reused = ServerApp::process_new(&self.inner, session, shutdown).await;
        drop(held);
        reused
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
