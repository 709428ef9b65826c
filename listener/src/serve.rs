//! The accept loop in front of an HTTP service: the config service's
//! router and the proxy's admin endpoints are both reached through it.
//!
//! TCP -> optional TLS (rustls, with a handshake timeout) -> HTTP/1.1 or
//! HTTP/2 (hyper-util's `auto` builder) -> the service, each request
//! carrying [`PeerAddr`] (and, over TLS, [`TlsInfo`] and a verified
//! client's [`PeerCertificate`]) in its extensions.
//!
//! Hygiene: a header-read timeout, an idle bound (a connection with no
//! request in flight is closed after [`Limits::idle_timeout`], or after
//! [`Limits::header_read_timeout`] if it never sent one: gracefully, and
//! hard [`Limits::grace_period`] later if an answer is still unwritten), a
//! write timeout (a write that makes no progress for
//! [`Limits::write_timeout`] ends the connection: a client that pipelines
//! requests and never reads cannot hold it), a cap on open
//! connections (the excess is closed at accept and counted in
//! [`ConnStats::refused`]), and a graceful shutdown:
//! stop accepting, end the long-poll watches, let in-flight requests finish
//! within [`Limits::grace_period`], then close what is left.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::io::WriteTimeout;

/// Bounds on the listener; [`Limits::default`] is what `edgesteer control`
/// uses unless told otherwise.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at most; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Longest wait for a request's headers (and for the first request).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// How long in-flight requests may run on after shutdown begins (and
    /// how long an idle connection being closed may take to write what it
    /// still owes the client before it is dropped).
    pub grace_period: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            handshake_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// How the service is reached: plain HTTP or TLS, and its limits.
#[derive(Clone, Debug)]
pub struct Transport {
    /// What the logs call this listener (`config service`, `admin`).
    pub name: &'static str,
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
}

impl Default for Transport {
    fn default() -> Transport {
        Transport {
            name: "listener",
            tls: None,
            limits: Limits::default(),
        }
    }
}

/// The listener's counters, shown on the service's `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections closed at accept because the cap was reached.
    pub refused: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Connections accepted (and not refused by the cap), ever.
    pub accepted: AtomicU64,
}

/// The client's address, in each request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A verified client certificate (mTLS; verified by rustls against the
/// listener's client CA), in each request's extensions. Its names are the
/// service's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate(pub CertificateDer<'static>);

/// What a TLS connection negotiated, in each of its requests' extensions:
/// the server name the client asked for (SNI) and the protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// e.g. `TLSv1_3`.
    pub version: String,
}

/// Boxed errors of a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP service a listener can serve: any `tower` service of hyper
/// requests that never fails (axum's `Router` is one; the admin
/// listener's router is another).
pub trait App: Clone + Send + 'static {
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
    fn call(&mut self, req: Request<Incoming>)
        -> impl Future<Output = Response<Self::Body>> + Send;
}

impl<S, B> App for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
    fn call(&mut self, req: Request<Incoming>) -> impl Future<Output = Response<B>> + Send {
        let fut = tower_service::Service::call(self, req);
        async move {
            match fut.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains: no
/// new connections, `on_drain` run (the config service ends its held
/// watches there), in-flight requests given `transport.limits.grace_period`,
/// the rest closed. Accept errors (e.g. out of file descriptors) are logged
/// and retried, never fatal. `stats` counts the connections.
pub async fn serve_with<A: App>(
    listener: TcpListener,
    app: A,
    transport: Transport,
    stats: Arc<ConnStats>,
    on_drain: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let name = transport.name;
    let acceptor = transport.tls.map(TlsAcceptor::from);
    let limits = Arc::new(transport.limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {
                stats.open.store(conns.len(), Relaxed);
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(listener = name, error = %e, "accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if conns.len() >= limits.max_connections {
                    stats.refused.fetch_add(1, Relaxed);
                    tracing::debug!(listener = name, %peer, max = limits.max_connections, "connection cap reached; closing the new connection");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                stats.accepted.fetch_add(1, Relaxed);
                conns.spawn(connection(
                    stream,
                    peer,
                    acceptor.clone(),
                    app.clone(),
                    limits.clone(),
                    stop_rx.clone(),
                    stats.clone(),
                ));
                stats.open.store(conns.len(), Relaxed);
            }
        }
    }
    drop(listener);
    on_drain();
    let _ = stop_tx.send(true);
    let open = conns.len();
    tracing::info!(
        listener = name,
        open,
        grace = ?limits.grace_period,
        "listener shutting down: no new connections, finishing in-flight requests"
    );
    let drained = tokio::time::timeout(limits.grace_period, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            left = conns.len(),
            "grace period over: closing the connections still open"
        );
        conns.shutdown().await;
    }
    stats.open.store(0, Relaxed);
    Ok(())
}

/// One accepted connection: the TLS handshake if any, then HTTP.
async fn connection<A: App>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: A,
    limits: Arc<Limits>,
    stop: watch::Receiver<bool>,
    stats: Arc<ConnStats>,
) {
    let Some(acceptor) = acceptor else {
        let io = TokioIo::new(WriteTimeout::new(stream, limits.write_timeout));
        return http(io, peer, None, None, app, &limits, stop).await;
    };
    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Verified by rustls against --client-ca when it is present.
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerCertificate(c.clone().into_owned()));
            let conn = tls.get_ref().1;
            let info = TlsInfo {
                sni: conn.server_name().map(str::to_string),
                version: conn
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
            };
            http(
                TokioIo::new(WriteTimeout::new(tls, limits.write_timeout)),
                peer,
                cert,
                Some(info),
                app,
                &limits,
                stop,
            )
            .await;
        }
        Ok(Err(e)) => {
            stats.handshake_failures.fetch_add(1, Relaxed);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            stats.handshake_failures.fetch_add(1, Relaxed);
            tracing::debug!(%peer, timeout = ?limits.handshake_timeout, "TLS handshake timed out");
        }
    }
}

/// When a connection last finished a request, and how many are running.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` that the last request ended.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    /// How long the connection has had nothing to do, and whether it ever
    /// sent a request.
    fn idle(&self) -> (Duration, bool) {
        if self.in_flight.load(Relaxed) > 0 {
            return (Duration::ZERO, true);
        }
        let since_start = self.start.elapsed();
        let last = Duration::from_millis(self.last_ms.load(Relaxed));
        (
            since_start.saturating_sub(last),
            self.requests.load(Relaxed) > 0,
        )
    }
}

/// Marks a request in flight until dropped (also when the client leaves
/// and hyper drops the handler's future).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Relaxed);
        a.requests.fetch_add(1, Relaxed);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until the client leaves,
/// it is idle too long, or shutdown begins (then it closes gracefully:
/// after the request in flight, or with an HTTP/2 GOAWAY).
async fn http<I, A: App>(
    io: I,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
    tls: Option<TlsInfo>,
    app: A,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
    });
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        if let Some(c) = &cert {
            req.extensions_mut().insert(c.clone());
        }
        if let Some(t) = &tls {
            req.extensions_mut().insert(t.clone());
        }
        let mut app = app.clone();
        let busy = InFlight::begin(&act);
        async move {
            let resp = app.call(req).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    // Once closing, the connection is dropped (hard) if it has not ended
    // within the grace period: a graceful shutdown waits for the answer in
    // flight to be written, which a client that never reads never allows.
    let hard = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(hard);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut hard, if closing => {
                tracing::debug!(%peer, grace = ?limits.grace_period, "closing a connection that did not end within the grace period");
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                hard.as_mut().reset(tokio::time::Instant::now() + limits.grace_period);
            }
            _ = tick.tick(), if !closing => {
                let (idle, seen) = activity.idle();
                let limit = if seen { limits.idle_timeout } else { limits.header_read_timeout };
                if idle >= limit {
                    tracing::debug!(%peer, ?idle, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    hard.as_mut().reset(tokio::time::Instant::now() + limits.grace_period);
                }
            }
        }
    }
}
