//! The config service's own transport: the accept loop in front of the
//! router, so the service decides how it is reached.
//!
//! TCP -> optional TLS (rustls, with a handshake timeout) -> HTTP/1.1 or
//! HTTP/2 (hyper-util's `auto` builder) -> the axum router, each request
//! carrying `ConnectInfo<SocketAddr>` for the access check's logs.
//!
//! Hygiene: a header-read timeout, an idle bound (a connection with no
//! request in flight is closed after [`Limits::idle_timeout`], or after
//! [`Limits::header_read_timeout`] if it never sent one), a cap on open
//! connections (the excess is closed at accept and counted in
//! `edgesteer_control_connections_refused_total`), and a graceful shutdown:
//! stop accepting, end the long-poll watches, let in-flight requests finish
//! within [`Limits::grace_period`], then close what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

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
    /// How long in-flight requests may run on after shutdown begins.
    pub grace_period: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            handshake_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(5),
        }
    }
}

/// How the service is reached: plain HTTP or TLS, and its limits.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
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

/// What a TLS connection negotiated, in each of its requests' extensions:
/// the server name the client asked for (SNI) and the protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// e.g. `TLSv1_3`.
    pub version: String,
}

/// The names in a verified client certificate (mTLS): its subject CN and
/// its DNS SANs, in that order. Put in each request's extensions; the
/// access check maps one listed with `--cert-proxy` to the `proxy` role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCert {
    pub names: Vec<String>,
}

impl PeerCert {
    /// The names of a DER certificate (none if it does not parse).
    pub fn from_der(der: &[u8]) -> PeerCert {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return PeerCert::default();
        };
        let mut names: Vec<String> = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .take(1)
            .collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            names.extend(san.value.general_names.iter().filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            }));
        }
        PeerCert { names }
    }
}

/// Why a TLS setting cannot be used; each names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{flag} {}: cannot read: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {}: {reason}", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--tls-cert {} and --tls-key {} cannot serve TLS together: {reason}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("--client-ca {}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file; an error when there is none.
pub fn read_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_file(flag, path)?;
    let bad = |reason: String| TlsSetupError::Pem {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no BEGIN CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS settings from `--tls-cert` and `--tls-key` (PEM; the
/// certificate file may hold the chain), offering h2 and HTTP/1.1 by ALPN.
/// With `client_ca`, the service asks clients for a certificate signed by
/// it; a client without one may still come in with a bearer token, a
/// client with a bad one is refused at the handshake.
pub fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    server_tls_with(cert, key, client_ca, false)
}

/// [`server_tls`], where `require_client_cert` refuses a handshake
/// without a client certificate that chains to `client_ca`.
pub fn server_tls_with(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain = read_certs("--tls-cert", cert)?;
    let key_pem = read_file("--tls-key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsSetupError::Pem {
        flag: "--tls-key",
        path: key.to_path_buf(),
        reason: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })?;
    let pair = |reason: String| TlsSetupError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("--client-ca", path)? {
                roots.add(c).map_err(|e| TlsSetupError::ClientCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = if require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsSetupError::ClientCa {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| pair(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains: no
/// new connections, `on_drain` run (the config service ends its held
/// watches there), in-flight requests given `transport.limits.grace_period`,
/// the rest closed. Accept errors (e.g. out of file descriptors) are logged
/// and retried, never fatal. The config service serves through
/// `state::serve`; the proxy's admin listener uses this directly. `stats`
/// counts the connections.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    transport: Transport,
    stats: Arc<ConnStats>,
    on_drain: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
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
                        tracing::warn!(error = %e, "config service: accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if conns.len() >= limits.max_connections {
                    stats.refused.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, max = limits.max_connections, "connection cap reached; closing the new connection");
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
        open,
        grace = ?limits.grace_period,
        "config service shutting down: no new connections, finishing in-flight requests"
    );
    let drained = tokio::time::timeout(limits.grace_period, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "grace period over: closing the connections still open"
        );
        conns.shutdown().await;
    }
    stats.open.store(0, Relaxed);
    Ok(())
}

/// One accepted connection: the TLS handshake if any, then HTTP.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    limits: Arc<Limits>,
    stop: watch::Receiver<bool>,
    stats: Arc<ConnStats>,
) {
    let Some(acceptor) = acceptor else {
        return http(TokioIo::new(stream), peer, None, None, app, &limits, stop).await;
    };
    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Verified by rustls against --client-ca when it is present.
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerCert::from_der(c));
            let conn = tls.get_ref().1;
            let info = TlsInfo {
                sni: conn.server_name().map(str::to_string),
                version: conn
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
            };
            http(
                TokioIo::new(tls),
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
async fn http<I>(
    io: I,
    peer: SocketAddr,
    cert: Option<PeerCert>,
    tls: Option<TlsInfo>,
    app: Router,
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
    let svc = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(c) = &cert {
            req.extensions_mut().insert(c.clone());
        }
        if let Some(t) = &tls {
            req.extensions_mut().insert(t.clone());
        }
        let mut app = app.clone();
        let busy = InFlight::begin(&act);
        async move {
            let resp = tower_service::Service::call(&mut app, req).await;
            drop(busy);
            resp
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
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                let (idle, seen) = activity.idle();
                let limit = if seen { limits.idle_timeout } else { limits.header_read_timeout };
                if idle >= limit {
                    tracing::debug!(%peer, ?idle, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
