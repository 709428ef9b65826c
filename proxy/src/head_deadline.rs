//! The request-head deadline: a client must send a whole request head
//! within the table's `[limits] head_timeout_ms` (default 10 s), or its
//! connection is closed. Pingora times reads out one at a time (a byte
//! every 59 s holds a connection for ever: slowloris), so the deadline is
//! kept here, in a wrapper around the client's stream that Pingora reads
//! through:
//! - armed at accept, for the connection's first request;
//! - disarmed when the head is parsed (`request_filter`, through
//!   [`head_done`]), so bodies and answers are timed by Pingora's own
//!   per-read and per-write timeouts;
//! - re-armed by the next request's first byte on a keep-alive connection
//!   ([`next_head`], from the logging phase); the idle wait before that byte
//!   is the keep-alive timeout's. The clock starts at the first read of
//!   that head that has to wait, so a head that arrives in one read (nearly
//!   every request) costs no clock read and no timer;
//! - off for HTTP/2 (ALPN `h2`, or the h2c preface): streams have no
//!   connection-wide head, and the h2 idle timeout bounds the connection.
//!
//! A read past the deadline fails with `TimedOut`; Pingora then closes the
//! connection without an answer, as nginx does at `client_header_timeout`.
//! Closes are counted in `edgesteer_connections_closed_total{reason="head_timeout"}`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// No deadline.
const OFF: u64 = 0;
/// The next byte read starts a head: arm then.
const ON_FIRST_BYTE: u64 = 1;
/// A head has started; its deadline is set by the first read that has to
/// wait. A head that arrives in one read (nearly all) never reads the clock.
const STARTED: u64 = 2;
/// States above this are a deadline: milliseconds since `epoch`, plus this.
const DEADLINE_BASE: u64 = 3;

/// The client's stream, with the head deadline.
pub struct HeadDeadline {
    inner: Stream,
    /// `OFF`, `ON_FIRST_BYTE`, `STARTED`, or the deadline as milliseconds
    /// since `epoch`, plus `DEADLINE_BASE`.
    state: AtomicU64,
    epoch: Instant,
    timeout: Duration,
    /// The timer a pending read waits on (made when a read first pends).
    sleep: Option<Pin<Box<Sleep>>>,
    /// Counted once when the deadline closes the connection.
    closed: Option<prometheus::IntCounter>,
}

impl std::fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadDeadline")
            .field("inner", &self.inner)
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl HeadDeadline {
    /// Wraps `inner`; the first head's deadline runs from now. HTTP/2 by
    /// ALPN is returned unwrapped.
    pub fn wrap(inner: Stream, timeout: Duration, closed: prometheus::IntCounter) -> Stream {
        if matches!(inner.selected_alpn_proto(), Some(ALPN::H2)) {
            return inner;
        }
        let d = HeadDeadline {
            inner,
            state: AtomicU64::new(OFF),
            epoch: Instant::now(),
            timeout,
            sleep: None,
            closed: Some(closed),
        };
        d.arm_now();
        Box::new(d)
    }

    fn arm_now(&self) -> u64 {
        let at = (self.epoch.elapsed() + self.timeout).as_millis() as u64 + DEADLINE_BASE;
        self.state.store(at, Ordering::Relaxed);
        at
    }

    fn deadline(&self, state: u64) -> Instant {
        self.epoch + Duration::from_millis(state - DEADLINE_BASE)
    }

    /// A read is pending: wake at `deadline` too, and fail then.
    fn wait(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<std::io::Result<()>> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out(&mut self) -> std::io::Error {
        self.state.store(OFF, Ordering::Relaxed);
        if let Some(c) = self.closed.take() {
            c.inc();
        }
        tracing::debug!(
            timeout_ms = self.timeout.as_millis() as u64,
            "request head not received whole within the head deadline; closing"
        );
        std::io::Error::new(std::io::ErrorKind::TimedOut, "request head deadline passed")
    }
}

/// The head of this request is in: no deadline until the next one.
pub fn head_done(session: &Session) {
    if let Some(d) = wrapper(session) {
        d.state.store(OFF, Ordering::Relaxed);
    }
}

/// This request is done; the connection may carry another, whose head
/// must arrive within the deadline from its first byte.
pub fn next_head(session: &Session) {
    if let Some(d) = wrapper(session) {
        d.state.store(ON_FIRST_BYTE, Ordering::Relaxed);
    }
}

fn wrapper(session: &Session) -> Option<&HeadDeadline> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<HeadDeadline>()
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let state = this.state.load(Ordering::Relaxed);
        if state == OFF {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if state == ON_FIRST_BYTE || state == STARTED {
            let before = buf.filled().len();
            let res = Pin::new(&mut this.inner).poll_read(cx, buf);
            match &res {
                Poll::Ready(Ok(())) if buf.filled().len() > before => {
                    if buf.filled()[before..].starts_with(b"PRI * HTTP/2.0") {
                        this.state.store(OFF, Ordering::Relaxed);
                    } else if state == ON_FIRST_BYTE {
                        this.state.store(STARTED, Ordering::Relaxed);
                    }
                    return res;
                }
                // A started head has to wait for more: its clock starts now.
                Poll::Pending if state == STARTED => {
                    let at = this.arm_now();
                    return this.wait(cx, this.deadline(at));
                }
                _ => return res,
            }
        }
        let deadline = this.deadline(state);
        if Instant::now() >= deadline {
            return Poll::Ready(Err(this.timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.wait(cx, deadline),
            Poll::Ready(Ok(())) => {
                // h2c by prior knowledge: streams, not heads, from here on.
                if buf.filled()[before..].starts_with(b"PRI * HTTP/2.0") {
                    this.state.store(OFF, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

use std::future::Future as _;

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora_core::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    /// Pingora peeks at accept for the h2c preface, waiting for bytes with
    /// no timeout of its own: the deadline bounds that wait too.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let state = self.state.load(Ordering::Relaxed);
        let peeked = if state >= DEADLINE_BASE {
            let deadline = self.deadline(state);
            match tokio::time::timeout_at(deadline, self.inner.try_peek(buf)).await {
                Ok(r) => r?,
                Err(_) => return Err(self.timed_out()),
            }
        } else {
            self.inner.try_peek(buf).await?
        };
        if peeked && buf.starts_with(b"PRI * HTTP/2.0") {
            // h2c by prior knowledge (Pingora peeks for it at accept).
            self.state.store(OFF, Ordering::Relaxed);
        }
        Ok(peeked)
    }
}
