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
//! exactly what the count must cover.
//!
//! It also runs an HTTP/1 connection's request loop (Pingora's own, for
//! `HttpServerApp`, with the [`crate::intake`] in front of each request):
//! the intake waits for each request and reads its head whole before
//! Pingora's session and request future exist. That loop also applies the
//! table's `max_requests_per_connection` live. HTTP/2 (ALPN or the h2c
//! preface) is handed to Pingora's own server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::time::Instant;

use crate::intake::{self, Closed, Closing, Intake, Rules, Wait};
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
            handshakes,
            open: AtomicUsize::new(0),
            closing: Closing::default(),
        }
    }

    /// An HTTP/1 connection: the intake, then Pingora, request by request.
    async fn http1(
        self: &Arc<Self>,
        mut stream: Stream,
        accepted: Instant,
        shutdown: &ShutdownWatch,
    ) {
        let h2c =
            stream.get_ssl_digest().is_none() && self.inner.server_options().is_some_and(|o| o.h2c);
        let first_by = accepted + self.steer.peek().table.limits.head_timeout;
        let mut wait = Wait::First { by: first_by, h2c };
        let mut settings: Option<HttpPersistentSettings> = None;
        // The connection's one timer for its waits between requests
        // (`intake::first_bytes`): armed lazily, not once per request.
        let mut timer = std::pin::pin!(tokio::time::sleep_until(first_by));
        loop {
            // Copied out: the snapshot is not held while a client idles.
            let (rules, keepalive, max_requests, write_idle) = {
                let snap = self.steer.peek();
                let l = &snap.table.limits;
                (
                    Rules::new(l),
                    l.keepalive_idle.as_secs().max(1),
                    l.max_requests_per_connection,
                    l.write_idle,
                )
            };
            let buf = match intake::next_request(
                &mut stream,
                wait,
                &rules,
                &self.closing,
                timer.as_mut(),
            )
            .await
            {
                Intake::Http1(buf) => buf,
                // Cold paths are boxed: every connection's future is as
                // large as its largest state, and is held all its life.
                Intake::H2c(buf) => return Box::pin(self.h2c(stream, &buf, shutdown)).await,
                Intake::Closed(why) => {
                    if why == Closed::HeadTimeout {
                        self.steer.metrics.head_timeouts.inc();
                        tracing::debug!(
                            timeout = ?rules.head_timeout(),
                            "request head not received within the head deadline; connection closed"
                        );
                    }
                    return;
                }
                Intake::Refused(refused) => {
                    let answer = crate::proxy::intake_refusal(&self.steer, refused);
                    Box::pin(intake::answer_and_close(stream, &answer, write_idle)).await;
                    return;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    let closing = *shutdown.borrow() || self.closing.is_closed();
                    session.set_keepalive((!closing).then_some(keepalive));
                    // Pingora counts reuses, not requests: a connection
                    // whose first session may be reused N times carries
                    // N + 1 requests.
                    session.set_keepalive_reuses_remaining(Some(max_requests.saturating_sub(1)));
                }
            }
            // Pipelining is never turned on, so Pingora carries no bytes
            // of its own to the next request: these are the only ones.
            if let ServerSession::H1(h1) = &mut session {
                h1.set_pipelined_prefix(buf);
            }
            match self.inner.process_new_http(session, shutdown).await {
                Some(reused) => (stream, settings) = reused.consume(),
                None => return,
            }
            wait = Wait::Next;
        }
    }

    /// A plaintext connection that opened with the HTTP/2 preface: its
    /// bytes go back to the socket, and Pingora's HTTP/2 server takes it.
    async fn h2c(self: &Arc<Self>, stream: Stream, read: &[u8], shutdown: &ShutdownWatch) {
        use pingora_core::protocols::l4::stream::Stream as L4;
        let l4: Option<Stream> = match stream.into_any().downcast::<L4>() {
            Ok(mut l4) => {
                l4.rewind(read);
                Some(l4)
            }
            Err(_) => None,
        };
        match l4 {
            Some(l4) => {
                ServerApp::process_new(&self.inner, l4, shutdown).await;
            }
            None => tracing::warn!(
                "an h2c connection was not a plain TCP stream; closed (please report this)"
            ),
        }
    }
}

/// How often each worker's runtime wakes by itself (see [`heartbeat`]).
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts, once per worker thread, a task that only wakes every
/// [`HEARTBEAT_EVERY`]. On a single-threaded runtime, tokio's timer writes
/// the runtime's eventfd (a syscall) whenever a timer is set to fire
/// before the wake-up the runtime last planned; with nothing else pending
/// that is every request's upstream timeout. A nearer planned wake-up
/// makes setting a timer (every timeout here is a second or more) cost no
/// syscall, for four wake-ups a second.
fn heartbeat() {
    use std::cell::Cell;
    thread_local! {
        static STARTED: Cell<bool> = const { Cell::new(false) };
    }
    if STARTED.with(|s| s.replace(true)) {
        return;
    }
    tokio::spawn(async {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
        }
    });
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
        heartbeat();
        // A TLS connection is here: its handshake finished in time.
        self.handshakes.handshake_done(&session);
        let accepted = Instant::now();
        let max = self.steer.peek().table.limits.max_connections as usize;
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
        let http1 = match session.selected_alpn_proto() {
            None | Some(ALPN::H1) => true,
            Some(_) => false,
        };
        if http1 && self.steer.edge_checks {
            self.http1(session, accepted, shutdown).await;
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
