//! An HTTP/1 connection's request loop (Pingora's own, for
//! `HttpServerApp`, with the [`crate::intake`] in front of each request):
//! the intake waits for each request and reads its head whole before
//! Pingora's session and request future exist. The loop applies the
//! table's keep-alive and `max_requests_per_connection` live. A plaintext
//! connection that opens with the h2c preface is handed to Pingora's
//! HTTP/2 server with its bytes rewound.

use std::sync::Arc;

use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::time::Instant;

use crate::intake::{self, Closed, Closing, Intake, Rules, Wait};
use crate::proxy::EdgeProxy;
use crate::steer::Steering;

/// What one admitted connection's loop needs from the listener.
pub struct Conn<'a> {
    pub inner: &'a Arc<HttpProxy<EdgeProxy>>,
    pub steer: &'a Steering,
    /// Set at shutdown: connections waiting for a request close.
    pub closing: &'a Closing,
    pub shutdown: &'a ShutdownWatch,
}

impl Conn<'_> {
    /// An HTTP/1 connection: the intake, then Pingora, request by request.
    pub async fn http1(&self, mut stream: Stream, accepted: Instant) {
        let shutdown = self.shutdown;
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
                    l.keepalive_secs(),
                    l.max_requests_per_connection,
                    l.write_idle,
                )
            };
            let buf = match intake::next_request(
                &mut stream,
                wait,
                &rules,
                self.closing,
                timer.as_mut(),
            )
            .await
            {
                Intake::Http1(buf) => buf,
                // Cold paths are boxed: every connection's future is as
                // large as its largest state, and is held all its life.
                Intake::H2c(buf) => return Box::pin(self.h2c(stream, &buf)).await,
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
                    let answer = crate::proxy::intake_refusal(self.steer, refused);
                    Box::pin(intake::answer_and_close(stream, &answer, write_idle)).await;
                    return;
                }
            };
            // The session (688 bytes) is made in a block that ends before
            // the await: a moved-from local would keep its slot in this
            // future, which every connection holds all its life.
            let request = {
                let mut session = ServerSession::new_http1(stream);
                match settings.take() {
                    Some(s) => s.apply_to_session(&mut session),
                    None => {
                        let closing = *shutdown.borrow() || self.closing.is_closed();
                        session.set_keepalive((!closing).then_some(keepalive));
                        // Pingora counts reuses, not requests: a connection
                        // whose first session may be reused N times carries
                        // N + 1 requests.
                        session
                            .set_keepalive_reuses_remaining(Some(max_requests.saturating_sub(1)));
                    }
                }
                // Pipelining is never turned on, so Pingora carries no bytes
                // of its own to the next request: these are the only ones.
                if let ServerSession::H1(h1) = &mut session {
                    h1.set_pipelined_prefix(buf);
                }
                self.inner.process_new_http(session, shutdown)
            };
            match request.await {
                Some(reused) => (stream, settings) = reused.consume(),
                None => return,
            }
            wait = Wait::Next;
        }
    }

    /// A plaintext connection that opened with the HTTP/2 preface: its
    /// bytes go back to the socket, and Pingora's HTTP/2 server takes it.
    async fn h2c(&self, stream: Stream, read: &[u8]) {
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
                ServerApp::process_new(self.inner, l4, self.shutdown).await;
            }
            None => tracing::warn!(
                "an h2c connection was not a plain TCP stream; closed (please report this)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every connection holds its loop's future for its whole life (1000
    /// slow readers hold 1000). Pingora boxes the request's future, so the
    /// loop's own state is the intake, its timer and the session being set
    /// up; the session must not keep a slot beside the boxed request while
    /// it runs. Unoptimised (as tests build) the future is 816 bytes; it was
    /// 1,144 while the moved-from session kept its slot.
    #[tokio::test]
    async fn a_connection_future_does_not_keep_the_session_it_handed_on() {
        const MAX: usize = 960;
        let steer = crate::steer::covergen_for_tests();
        let conf = Arc::new(pingora_core::server::configuration::ServerConf::default());
        let inner = Arc::new(pingora_proxy::http_proxy(
            &conf,
            EdgeProxy::new(steer.clone()),
        ));
        let closing = Closing::default();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let conn = Conn {
            inner: &inner,
            steer: &steer,
            closing: &closing,
            shutdown: &shutdown,
        };
        let (server, _client) = tokio::net::UnixStream::pair().unwrap();
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
        let connection = conn.http1(stream, Instant::now());
        let size = std::mem::size_of_val(&connection);
        assert!(
            size <= MAX,
            "a connection's future is {size} bytes (at most {MAX}): held by every open \
             connection; see which local grew (print-type-sizes)"
        );
    }
}
