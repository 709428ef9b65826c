//! Downstream limits: how long a client may hold a connection or a request
//! and how many requests one connection may carry. The table's `[limits]`
//! section; which apply live and which at start is in docs/design.md.

use std::time::Duration;

/// The compiled `[limits]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownstreamLimits {
    /// A request head must arrive whole within this: from accept for a
    /// connection's first request, from the first byte for a keep-alive
    /// one; past it the connection is closed (live, per connection).
    pub head_timeout: Duration,
    /// A TLS client must finish its handshake within this, or its
    /// connection is shut down (live, per connection; at most 60 s,
    /// Pingora's own fixed limit).
    pub tls_handshake_timeout: Duration,
    /// An HTTP/1.1 connection idle between requests this long is closed
    /// (live, per request).
    pub keepalive_idle: Duration,
    /// A request body that sends nothing for this long is abandoned
    /// (live, per request).
    pub body_read_idle: Duration,
    /// A client that takes nothing of the answer for this long is dropped
    /// (live, per request).
    pub write_idle: Duration,
    /// A client that reads the answer slower than this (bytes/s) is
    /// dropped; `None` for no floor (live, per request).
    pub min_send_rate: Option<usize>,
    /// Requests one HTTP/1.1 connection may carry (live, per connection).
    pub max_requests_per_connection: u32,
    /// An HTTP/2 connection idle this long is closed (at start).
    pub h2_idle: Duration,
    /// Client connections the proxy holds at once (all its listeners);
    /// past it, a new connection is closed as soon as it is accepted and
    /// counted (live, per connection).
    pub max_connections: u32,
    /// Most header lines a request may carry (live; more is 431).
    pub max_header_lines: u32,
    /// Longest header line, name and value (live; longer is 431).
    pub max_header_line_bytes: u32,
    /// Largest request head, request line included (live; larger is 431).
    pub max_head_bytes: u32,
    /// A request body with a `Content-Length` up to this is read whole at
    /// the edge before an origin is chosen or contacted (each read within
    /// `body_read_idle`); larger and chunked ones stream. 0 streams every
    /// body (live, per request).
    pub buffer_body_bytes: u32,
    /// Response body bytes one request may hold in user space between the
    /// origin and the client: half in flight to the client, read from the
    /// origin in pieces of up to half as that room frees, and the body's
    /// last chunk; a client that reads slower
    /// than the origin sends holds the origin back through TCP instead of
    /// growing the proxy (live, per request).
    pub response_buffer_bytes: u32,
}

impl DownstreamLimits {
    /// The keep-alive idle time in whole seconds, at least one: what
    /// Pingora's keep-alive setting takes.
    pub fn keepalive_secs(&self) -> u64 {
        self.keepalive_idle.as_secs().max(1)
    }
}

impl Default for DownstreamLimits {
    fn default() -> Self {
        DownstreamLimits {
            head_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            body_read_idle: Duration::from_secs(30),
            write_idle: Duration::from_secs(30),
            min_send_rate: None,
            max_requests_per_connection: 10_000,
            h2_idle: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_lines: 100,
            max_header_line_bytes: 8 * 1024,
            max_head_bytes: 64 * 1024,
            buffer_body_bytes: 64 * 1024,
            response_buffer_bytes: 32 * 1024,
        }
    }
}
