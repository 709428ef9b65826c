//! The TLS handshake deadline on the proxy's TLS listeners: a client must
//! finish its handshake within the table's `[limits]
//! tls_handshake_timeout_ms` (default 10 s), or its connection is closed
//! and counted in `edgesteer_tls_handshake_timeouts_total`.
//!
//! Pingora runs the handshake before any of our hooks, under a timeout
//! that was a fixed 60 s. Our patch to it (vendor/README.md, 4) lets the
//! pre-TLS callback ([`PreTlsProcess`]) set that timeout per connection
//! and hears how each handshake ended, so the deadline is Pingora's own:
//! no watchdog, no second descriptor, nothing per connection beyond one
//! counter. (Until session 4 a watchdog task per connection held a
//! duplicate of the socket and shut it down at the deadline: a spawn, a
//! `dup`, a `close` and two cookie reads per TLS connection.)
//!
//! The same callback applies the connection cap to TLS connections: open
//! connections plus handshakes under way may be at most `[limits]
//! max_connections`; past it a connection is refused before its handshake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::listeners::{HandshakeOutcome, PreTlsProcess};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use prometheus::IntGauge;

use crate::steer::Steering;

/// The deadline and the count of handshakes under way.
pub struct HandshakeDeadline {
    steer: Arc<Steering>,
    /// Connections past their handshake (counted by [`crate::conn_cap`]).
    open: Arc<AtomicUsize>,
    /// `edgesteer_tls_handshakes_in_progress`: handshakes let through by
    /// the cap and not yet ended; the count itself, not a copy of one.
    in_progress: IntGauge,
}

/// Registers `edgesteer_tls_handshakes_in_progress` with the proxy's
/// metrics (a second registration in one process, as in tests, is
/// logged and the gauge still counts).
fn in_progress_gauge(steer: &Steering) -> prometheus::Result<IntGauge> {
    let gauge = IntGauge::new(
        "edgesteer_tls_handshakes_in_progress",
        "TLS handshakes under way on the proxy's listeners (they count against [limits] max_connections).",
    )?;
    if let Err(e) = steer.metrics.registry.register(Box::new(gauge.clone())) {
        tracing::debug!(error = %e, "TLS handshake gauge not registered");
    }
    Ok(gauge)
}

impl HandshakeDeadline {
    pub fn new(steer: Arc<Steering>) -> prometheus::Result<Arc<HandshakeDeadline>> {
        Ok(Arc::new(HandshakeDeadline {
            in_progress: in_progress_gauge(&steer)?,
            steer,
            open: Arc::default(),
        }))
    }

    /// The count of open connections, shared with the connection cap.
    pub fn open(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Handshakes under way (a shutdown waits for them as for requests).
    pub fn in_progress(&self) -> usize {
        usize::try_from(self.in_progress.get()).unwrap_or(0)
    }
}

#[async_trait]
impl PreTlsProcess for HandshakeDeadline {
    async fn process(&self, _stream: &mut L4Stream) -> pingora_core::Result<()> {
        let max = self.steer.peek().table.limits.max_connections as usize;
        // The connection cap counts handshakes under way: a connection past
        // it is refused here, before any TLS work.
        let busy = self.open.load(Ordering::Relaxed) + self.in_progress();
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
        // Let through: Pingora reports its end exactly once (`handshake_ended`).
        self.in_progress.inc();
        Ok(())
    }

    fn handshake_timeout(&self) -> Option<Duration> {
        Some(self.steer.peek().table.limits.tls_handshake_timeout)
    }

    fn handshake_ended(&self, outcome: HandshakeOutcome) {
        self.in_progress.dec();
        if outcome == HandshakeOutcome::TimedOut {
            self.steer.metrics.tls_handshake_timeouts.inc();
            tracing::debug!(
                timeout_ms = self
                    .steer
                    .peek()
                    .table
                    .limits
                    .tls_handshake_timeout
                    .as_millis() as u64,
                "TLS handshake not finished within the deadline; connection closed"
            );
        }
    }
}
