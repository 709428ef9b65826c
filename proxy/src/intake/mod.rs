//! The request intake: each HTTP/1 request's head, and a small body, is
//! read here, whole, before Pingora is given the connection for it. A
//! connection waiting for a request therefore holds no Pingora session,
//! no request future and no header buffer: its first bytes are read into
//! a buffer on the stack (only for the length of one poll), and a buffer
//! on the heap exists only once a client has sent something. nginx
//! allocates its header buffer the same way, on the first byte.
//!
//! Here, in order:
//! - **the wait for a request** (no buffer held): a connection's first
//!   request must arrive whole by `[limits] head_timeout_ms` after accept;
//!   a keep-alive connection may idle `keepalive_idle_ms` before its next
//!   request's first byte. Closing the service ends a keep-alive wait (after
//!   one last read, so a request already sent is served), but not a new
//!   connection's wait for its first request, nor a request that has begun:
//!   the client could not have known, and the grace period covers them;
//! - **the head deadline**: once a head has started it must end within
//!   `head_timeout_ms` (slowloris is closed then, counted in
//!   `edgesteer_head_timeouts_total`); a head still unfinished past
//!   `max_head_bytes` is answered 431 here;
//! - **small bodies buffered at the edge** (`[limits] buffer_body_bytes`,
//!   HAProxy's `http-buffer-request`, nginx's request buffering): a body
//!   with a `Content-Length` up to it is read whole, each read within
//!   `body_read_idle_ms` (else 408), before a region is chosen or an origin
//!   contacted. A client that trickles a body holds a few kilobytes here
//!   instead of an upstream connection and Pingora's 64 KiB body buffer.
//!   Chunked bodies, `Expect` and larger bodies stream as before;
//! - **h2c**: a plaintext connection that opens with the HTTP/2 preface is
//!   handed to Pingora's own HTTP/2 server, its bytes given back.
//!
//! What is read is handed to Pingora as the session's first bytes (its
//! pipelining prefix), so Pingora parses it as if it had read it itself,
//! and the buffer becomes its header buffer: nothing is copied twice.

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use edgesteer_config::limits::DownstreamLimits;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant, Sleep};

use crate::head::{empty_lines, head_state, is_length, Head, MAX_HEADERS};
use crate::lazy_deadline::LazyDeadline;

/// The first buffer's size: Pingora's own first header buffer, which the
/// buffer handed over becomes.
const INIT_BUF: usize = 4096;
/// HTTP/2's connection preface: a plaintext connection opening with it is
/// h2c.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The service is closing: keep-alive waits for a next request end
/// (Pingora's own `read_request` ends the same way at `cleanup`).
#[derive(Default)]
pub struct Closing {
    closed: AtomicBool,
    notify: Notify,
}

impl Closing {
    /// Ends every wait for a request, now and later.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// What the intake takes from the live table, copied once per request.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    head_timeout: Duration,
    keepalive_idle: Duration,
    body_read_idle: Duration,
    max_head_bytes: usize,
    buffer_body_bytes: usize,
}

impl Rules {
    pub fn head_timeout(&self) -> Duration {
        self.head_timeout
    }

    pub fn new(l: &DownstreamLimits) -> Rules {
        Rules {
            head_timeout: l.head_timeout,
            keepalive_idle: l.keepalive_idle,
            body_read_idle: l.body_read_idle,
            max_head_bytes: l.max_head_bytes as usize,
            buffer_body_bytes: l.buffer_body_bytes as usize,
        }
    }
}

/// Which request of a connection is awaited.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// The first: its head must be in by `by` (accept + head timeout);
    /// `h2c` when the connection may turn out to be HTTP/2 (plaintext).
    First { by: Instant, h2c: bool },
    /// A keep-alive one: idle up to the keep-alive timeout, then the head
    /// timeout from its first byte.
    Next,
}

/// Why a connection ended without a request to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The client closed (or broke) the connection between requests.
    Client,
    /// Idle past the keep-alive timeout.
    Idle,
    /// A head missed its deadline (a first request's runs from accept, so
    /// a connection that sends nothing misses it too); counted.
    HeadTimeout,
    /// The service is closing.
    Shutdown,
}

/// A client error the intake answers itself, then closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// 431: the head grew past `max_head_bytes` before it ended.
    HeadTooLarge { max: usize },
    /// 408: a buffered body sent nothing for `body_read_idle`.
    BodyTimeout { idle: Duration },
    /// 400: bytes that no more bytes can make a request head.
    BadHead,
}

/// What a wait for a request gave.
#[derive(Debug)]
pub enum Intake {
    /// An HTTP/1 request: its head, and its body if buffered, for Pingora.
    Http1(BytesMut),
    /// The HTTP/2 preface on a plaintext connection: the bytes read, to be
    /// given back before Pingora's HTTP/2 server reads them.
    H2c(BytesMut),
    Closed(Closed),
    Refused(Refused),
}

/// The state of a head as it arrives, judged again only once a line has
/// ended since the last look: a head trickled a byte at a time is parsed
/// once per line (at most `MAX_HEADERS` + 1), not once per byte (64 KiB
/// parsed whole 64 Ki times). A bad byte inside a line is then refused
/// when its line ends, or at the size limit or the head deadline.
#[derive(Default)]
struct Judged {
    /// Bytes of the buffer the last judgement saw (0: none yet).
    upto: usize,
    /// How many times the head was parsed (for the tests).
    parses: usize,
}

impl Judged {
    fn state(&mut self, buf: &[u8]) -> Head {
        let new = buf.get(self.upto..).unwrap_or_default();
        if self.upto > 0 && memchr::memchr(b'\n', new).is_none() {
            return Head::Partial;
        }
        self.upto = buf.len();
        self.parses += 1;
        head_state(buf)
    }
}

/// Waits for the next request on `stream`.
pub async fn next_request(
    stream: &mut Stream,
    wait: Wait,
    rules: &Rules,
    closing: &Closing,
    timer: Pin<&mut Sleep>,
) -> Intake {
    let mut buf = match first_bytes(stream, wait, rules, closing, timer).await {
        Ok(buf) => buf,
        Err(why) => return Intake::Closed(why),
    };
    // A head that began now must end by this; read from the clock only if
    // the head does not come in one read.
    let mut head_by = match wait {
        Wait::First { by, .. } => Some(by),
        Wait::Next => None,
    };
    let h2c = matches!(wait, Wait::First { h2c: true, .. });
    // Empty lines before the request line (RFC 9112 §2.2) are dropped
    // here, counted against the head's size.
    let mut skipped = 0usize;
    let mut judged = Judged::default();
    let whole = loop {
        let empty = empty_lines(&buf);
        if empty > 0 {
            skipped += empty;
            bytes::Buf::advance(&mut buf, empty);
            judged = Judged::default();
        }
        if h2c && buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
            // Could still be the HTTP/2 preface: read on.
        } else if h2c && buf.starts_with(H2_PREFACE) {
            return Intake::H2c(buf);
        } else {
            match judged.state(&buf) {
                Head::Complete => break true,
                Head::Invalid => return Intake::Refused(Refused::BadHead),
                Head::Partial if buf.len() + skipped > rules.max_head_bytes => {
                    return Intake::Refused(Refused::HeadTooLarge {
                        max: rules.max_head_bytes,
                    });
                }
                Head::Partial => {}
            }
        }
        let by = *head_by.get_or_insert_with(|| Instant::now() + rules.head_timeout);
        if buf.capacity() - buf.len() < INIT_BUF / 4 {
            buf.reserve(INIT_BUF);
        }
        // A request has begun: it is served even if the service is closing.
        match read_more(stream, &mut buf, by).await {
            Step::Read => {}
            Step::TimedOut => return Intake::Closed(Closed::HeadTimeout),
            Step::Eof => return Intake::Closed(Closed::Client),
        }
    };
    if let Some((head, len)) = whole.then(|| body_to_buffer(&buf, rules)).flatten() {
        while buf.len() < head + len {
            // Grown as bytes come (doubling), not to the announced length
            // at once: a client that announces 64 KiB and trickles holds
            // what it sent.
            buf.reserve((head + len - buf.len()).min(INIT_BUF));
            let by = Instant::now() + rules.body_read_idle;
            match read_more(stream, &mut buf, by).await {
                Step::Read => {}
                Step::TimedOut => {
                    return Intake::Refused(Refused::BodyTimeout {
                        idle: rules.body_read_idle,
                    })
                }
                Step::Eof => return Intake::Closed(Closed::Client),
            }
        }
    }
    Intake::Http1(buf)
}

/// The first bytes of a request. Nothing is held on the heap while the
/// client sends nothing: each poll reads into a stack buffer, and a heap
/// buffer is made only from bytes that came.
///
/// The deadline is kept by the connection's one `timer`, lazily (see
/// [`LazyDeadline`]).
async fn first_bytes(
    stream: &mut Stream,
    wait: Wait,
    rules: &Rules,
    closing: &Closing,
    timer: Pin<&mut Sleep>,
) -> Result<BytesMut, Closed> {
    let mut timer = LazyDeadline::new(timer);
    // Made before the flag is read (in the poll below): a close after that
    // still wakes it. Only a keep-alive wait ends when the service closes.
    let mut closed = pin!(closing.notify.notified());
    let ends_on_close = matches!(wait, Wait::Next);
    // This wait's deadline, read from the clock only once a read waits.
    let mut deadline: Option<Instant> = None;
    poll_fn(|cx| {
        let mut stack = [MaybeUninit::<u8>::uninit(); INIT_BUF];
        let mut read = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut *stream).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                return Poll::Ready(Err(Closed::Client))
            }
            Poll::Ready(Ok(())) => {
                // Exactly the bytes read: a head that came whole (nearly
                // all) becomes Pingora's parse buffer and lives as long as
                // the request, so no spare 4 KiB rides with it. A head that
                // needs more reads grows by `INIT_BUF` (`intake`).
                return Poll::Ready(Ok(BytesMut::from(read.filled())));
            }
            Poll::Ready(Err(_)) => return Poll::Ready(Err(Closed::Client)),
            Poll::Pending => {}
        }
        // Read first (above): a request already sent is served.
        if ends_on_close && (closing.is_closed() || closed.as_mut().poll(cx).is_ready()) {
            return Poll::Ready(Err(Closed::Shutdown));
        }
        let by = *deadline.get_or_insert_with(|| {
            let by = match wait {
                Wait::First { by, .. } => by,
                Wait::Next => Instant::now() + rules.keepalive_idle,
            };
            timer.arm(by);
            by
        });
        // A first request's deadline runs from accept: a connection that
        // sends nothing by then missed its head deadline.
        timer.poll_passed(cx, by).map(|()| {
            Err(match wait {
                Wait::First { .. } => Closed::HeadTimeout,
                Wait::Next => Closed::Idle,
            })
        })
    })
    .await
}

enum Step {
    Read,
    Eof,
    TimedOut,
}

/// Reads what comes into `buf`'s spare room by `by`.
async fn read_more(stream: &mut Stream, buf: &mut BytesMut, by: Instant) -> Step {
    tokio::select! {
        biased;
        r = stream.read_buf(buf) => match r {
            Ok(0) | Err(_) => Step::Eof,
            Ok(_) => Step::Read,
        },
        () = sleep_until(by) => Step::TimedOut,
    }
}

/// The head's length and the body's, when the body is one to read whole
/// here: one `Content-Length` within `buffer_body_bytes`, no
/// `Transfer-Encoding` (the framing check answers both at once), no
/// `Expect` (the client waits for a 100 before it sends the body).
fn body_to_buffer(buf: &[u8], rules: &Rules) -> Option<(usize, usize)> {
    if rules.buffer_body_bytes == 0 || buf.starts_with(b"GET ") || buf.starts_with(b"HEAD ") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut length = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return None;
            }
            // Anything but one number is refused later, unbuffered.
            let v = h.value.trim_ascii();
            if !is_length(v) {
                return None;
            }
            length = Some(std::str::from_utf8(v).ok()?.parse::<usize>().ok()?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || h.name.eq_ignore_ascii_case("expect")
        {
            return None;
        }
    }
    let length = length?;
    (length > 0 && length <= rules.buffer_body_bytes).then_some((head, length))
}

/// Writes an answer the intake gave itself, then closes the way nginx
/// does (lingering): the write side first, then what the client still
/// sends is read and dropped for a moment, so the client reads the answer
/// instead of a reset.
pub async fn answer_and_close(mut stream: Stream, answer: &[u8], write_idle: Duration) {
    let written = tokio::time::timeout(write_idle, async {
        stream.write_all(answer).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let linger = Instant::now() + Duration::from_secs(1);
    let mut drained = 0usize;
    let mut sink = [0u8; 4096];
    while drained < 256 * 1024 {
        match tokio::time::timeout_at(linger, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests;
