//! Demo region backends: tiny HTTP servers on loopback that answer every
//! request with who they are, so a curl (or a test) sees where it landed.
//! `GET /health` answers `OK` for the health checker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use edgesteer_config::wire::BackendSpec;
use edgesteer_config::TableSpec;
use tokio::sync::oneshot;

/// A `fail_status` that makes the backend take requests and never answer
/// them (its health endpoint still answers): a hung origin.
pub const HANG: u16 = 1;

/// Identity a demo backend reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Identity {
    pub region: String,
    pub backend: String,
    pub track: String,
}

/// A running demo backend. Dropping it stops it.
#[derive(Debug)]
pub struct DemoBackend {
    pub id: Identity,
    pub addr: SocketAddr,
    /// Requests answered (health checks excluded).
    pub served: Arc<AtomicU64>,
    /// When non-zero, every request is answered with this status; [`HANG`]
    /// accepts requests and never answers them.
    pub fail_status: Arc<AtomicU16>,
    /// When set, `/health` answers 503.
    pub health_fail: Arc<AtomicBool>,
    /// When non-zero, every echoed answer (all but `/health` and
    /// `/bytes`) waits this many milliseconds first: a latency regression
    /// that is no error.
    pub delay_ms: Arc<AtomicU64>,
    /// Connection counts (TLS backends only).
    pub conns: Option<Arc<edgesteer_listener::ConnStats>>,
    stop: Option<oneshot::Sender<()>>,
}

impl DemoBackend {
    /// Stops accepting and closes the listener.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
struct BackendState {
    id: Arc<Identity>,
    served: Arc<AtomicU64>,
    fail_status: Arc<AtomicU16>,
    health_fail: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

/// Starts one backend on `bind` (port 0 picks a free port).
pub async fn spawn_backend(id: Identity, bind: SocketAddr) -> std::io::Result<DemoBackend> {
    spawn(id, bind, None).await
}

/// Starts one backend speaking TLS (h2 or HTTP/1.1 by ALPN) with `tls`.
/// Answers say which server name the client asked for (`sni`).
pub async fn spawn_backend_tls(
    id: Identity,
    bind: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<DemoBackend> {
    spawn(id, bind, Some(tls)).await
}

async fn spawn(
    id: Identity,
    bind: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<DemoBackend> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    let fail_status = Arc::new(AtomicU16::new(0));
    let health_fail = Arc::new(AtomicBool::new(false));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let state = BackendState {
        id: Arc::new(id.clone()),
        served: served.clone(),
        fail_status: fail_status.clone(),
        health_fail: health_fail.clone(),
        delay_ms: delay_ms.clone(),
    };
    let app = Router::new()
        .route("/health", get(health))
        .route("/upload", axum::routing::post(upload))
        .route("/slow", get(slow))
        .route("/bytes", get(bytes))
        .fallback(echo)
        .with_state(state);
    let (tx, rx) = oneshot::channel();
    let conns = match tls {
        None => {
            tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = rx.await;
                });
                if let Err(e) = serve.await {
                    tracing::warn!(error = %e, "demo backend stopped");
                }
            });
            None
        }
        Some(tls) => {
            use edgesteer_listener::{serve_with, ConnStats, Limits, Transport};
            let stats = Arc::new(ConnStats::default());
            let transport = Transport {
                name: "demo backend",
                tls: Some(tls),
                limits: Limits {
                    max_connections: 65_536,
                    ..Limits::default()
                },
            };
            let serve = serve_with(listener, app, transport, stats.clone(), || {}, async move {
                let _ = rx.await;
            });
            tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::warn!(error = %e, "demo TLS backend stopped");
                }
            });
            Some(stats)
        }
    };
    Ok(DemoBackend {
        id,
        addr,
        served,
        fail_status,
        health_fail,
        delay_ms,
        conns,
        stop: Some(tx),
    })
}

/// A demo certificate authority and one server certificate it signed, as
/// PEM files in `dir`: `ca.pem`, `origin.pem`, `origin.key`. The server
/// certificate names `localhost`, `origin.demo.edgesteer` and 127.0.0.1.
/// `dir` is made (or kept) mode 0700 and the key is written 0600.
pub struct DemoPki {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl DemoPki {
    pub fn generate(dir: &std::path::Path) -> anyhow::Result<DemoPki> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        private_dir(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgesteer demo origin CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec![
            "localhost".to_string(),
            "origin.demo.edgesteer".to_string(),
            "127.0.0.1".to_string(),
        ])?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let pki = DemoPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("origin.pem"),
            key: dir.join("origin.key"),
        };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.cert, cert.pem())?;
        write_private(&pki.key, key.serialize_pem().as_bytes())?;
        Ok(pki)
    }

    /// The origins' server config (h2 and HTTP/1.1 by ALPN).
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        Ok(edgesteer_listener::server_tls(&self.cert, &self.key, None)?)
    }
}

/// Makes `dir` (and missing parents) mode 0700, or makes an existing one
/// 0700 if this user owns it; another user's directory is refused.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            anyhow::ensure!(
                m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw(),
                "{} exists and is not a directory of this user; refusing to put a private key there",
                dir.display()
            );
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private (0700)", dir.display()))
        }
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display())),
    }
}

/// Writes `bytes` to a new file at `path` readable by this user only
/// (0600); a file already there is replaced.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

async fn health(State(s): State<BackendState>) -> (axum::http::StatusCode, &'static str) {
    if s.health_fail.load(Ordering::Relaxed) {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "FAILING")
    } else {
        (axum::http::StatusCode::OK, "OK")
    }
}

/// Reads the whole request body before answering (as an upload endpoint
/// does), then answers like [`echo`] with the body's size.
async fn upload(State(s): State<BackendState>, req: Request) -> impl IntoResponse {
    let (parts, body) = req.into_parts();
    let size = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b.len(),
        Err(_) => return (axum::http::StatusCode::BAD_REQUEST, "body not read").into_response(),
    };
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    req.headers_mut()
        .insert("x-body-bytes", axum::http::HeaderValue::from(size));
    echo(State(s), req).await.into_response()
}

/// `?n=N` bytes (at most 16 MiB) of `x` with a `Content-Length`, streamed
/// from one static 64 KiB block: a large answer for slow-reader tests and
/// benches that costs the backend no memory per request. `&pattern=1`:
/// byte `i` is `i % 251` instead (a byte lost, repeated or reordered on
/// the way shows); `&chunked=1`: no `Content-Length`, so the answer is
/// chunked.
async fn bytes(State(s): State<BackendState>, req: Request) -> impl IntoResponse {
    static BLOCK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    /// 261 whole periods of 251, so each block continues the count.
    static PATTERN: [u8; 251 * 261] = {
        let mut b = [0u8; 251 * 261];
        let mut i = 0;
        while i < b.len() {
            b[i] = (i % 251) as u8;
            i += 1;
        }
        b
    };
    s.served.fetch_add(1, Ordering::Relaxed);
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let block: &'static [u8] = match param("pattern") {
        Some("1") => &PATTERN,
        _ => &BLOCK,
    };
    let n = param("n")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(BLOCK.len())
        .min(16 * 1024 * 1024);
    let chunks = (0..n.div_ceil(block.len())).map(move |i| {
        let len = (n - i * block.len()).min(block.len());
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(&block[..len]))
    });
    let mut headers = axum::http::HeaderMap::new();
    if param("chunked") != Some("1") {
        headers.insert(header::CONTENT_LENGTH, n.into());
    }
    (
        headers,
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
    )
}

/// Answers like [`echo`] after `?ms=N` milliseconds (at most 10 s): a
/// request that is still in flight when something happens to the proxy.
async fn slow(State(s): State<BackendState>, req: Request) -> impl IntoResponse {
    let ms = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000)
        .min(10_000);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    echo(State(s), req).await
}

async fn echo(State(s): State<BackendState>, req: Request) -> impl IntoResponse {
    if s.fail_status.load(Ordering::Relaxed) == HANG {
        // Accepted and never answered (the health endpoint still is).
        std::future::pending::<()>().await;
    }
    let delay = s.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    s.served.fetch_add(1, Ordering::Relaxed);
    let tls = req.extensions().get::<edgesteer_listener::TlsInfo>();
    let status = axum::http::StatusCode::from_u16(s.fail_status.load(Ordering::Relaxed))
        .unwrap_or(axum::http::StatusCode::OK);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = serde_json::json!({
        "region": s.id.region,
        "backend": s.id.backend,
        "track": s.id.track,
        "path": req.uri().path(),
        "method": req.method().as_str(),
        "forwarded_for": header("x-forwarded-for"),
        "forwarded_proto": header("x-forwarded-proto"),
        "forwarded": header("forwarded"),
        "real_ip": header("x-real-ip"),
        "forwarded_host": header("x-forwarded-host"),
        "forwarded_port": header("x-forwarded-port"),
        // What an origin that maps headers to CGI variables would also
        // read as forwarding headers.
        "underscored": req
            .headers()
            .keys()
            .map(|n| n.as_str())
            .filter(|n| n.contains('_'))
            .collect::<Vec<_>>(),
        "sni": tls.and_then(|t| t.sni.as_deref()),
        "tls_version": tls.map(|t| t.version.as_str()),
        "client_cert": req
            .extensions()
            .get::<edgesteer_listener::PeerCertificate>()
            .map(|c| edgesteer_control::peer_cert::PeerCert::from_der(&c.0).names),
        "http_version": format!("{:?}", req.version()),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Starts one loopback backend for every backend of every region in
/// `spec` (same count, weights and tracks) and returns the spec rewritten
/// to point at them.
pub async fn spawn_for_spec(spec: &TableSpec) -> std::io::Result<(TableSpec, Vec<DemoBackend>)> {
    spawn_for_spec_tls(spec, None).await
}

/// [`spawn_for_spec`], every origin plain HTTP except the regions in
/// `tls.1`, whose origins speak TLS with certificates from `tls.0` (the
/// table then trusts its CA and verifies the name `localhost`).
pub async fn spawn_for_spec_tls(
    spec: &TableSpec,
    tls: Option<(&DemoPki, &[&str])>,
) -> std::io::Result<(TableSpec, Vec<DemoBackend>)> {
    spawn_for_spec_on(spec, tls, &mut || SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// [`spawn_for_spec_tls`], each backend bound where `bind` says (tests
/// bind reserved ports, so the port of a backend a test stops is never
/// handed to another test's backend).
pub async fn spawn_for_spec_on(
    spec: &TableSpec,
    tls: Option<(&DemoPki, &[&str])>,
    bind: &mut (dyn FnMut() -> SocketAddr + Send),
) -> std::io::Result<(TableSpec, Vec<DemoBackend>)> {
    let mut out = spec.clone();
    // The example's production upstream settings do not fit loopback
    // origins: plain HTTP unless a region is named below.
    out.upstream = edgesteer_config::wire::UpstreamSpec::default();
    let server = match tls {
        Some((pki, _)) => Some(
            pki.server_config()
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        None => None,
    };
    let mut running = Vec::new();
    for (region, r) in out.regions.iter_mut() {
        r.upstream = None;
        let region_tls = match (tls, &server) {
            (Some((pki, names)), Some(cfg)) if names.contains(&region.as_str()) => {
                r.upstream = Some(edgesteer_config::wire::UpstreamSpec {
                    tls: Some(true),
                    sni: Some("localhost".into()),
                    ca: Some(pki.ca.display().to_string()),
                    alpn: Some(vec!["h2".into(), "http/1.1".into()]),
                    ..Default::default()
                });
                Some(cfg.clone())
            }
            _ => None,
        };
        let mut backends = Vec::with_capacity(r.backends.len());
        for (i, b) in r.backends.iter().enumerate() {
            let track = b.track.clone().unwrap_or_else(|| "stable".into());
            let id = Identity {
                region: region.clone(),
                backend: format!("{region}-{}", i + 1),
                track,
            };
            let backend = spawn(id, bind(), region_tls.clone()).await?;
            backends.push(BackendSpec {
                address: backend.addr.to_string(),
                weight: b.weight,
                track: b.track.clone(),
            });
            running.push(backend);
        }
        r.backends = backends;
    }
    Ok((out, running))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_demo_pki_keeps_its_key_private() {
        let base = std::env::temp_dir().join(format!("edgesteer-pki-test-{}", std::process::id()));
        let dir = base.join("pki");
        let pki = super::DemoPki::generate(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&pki.key), 0o600);
        // An existing, open directory is closed, and a new key replaces an
        // old, world-readable one.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pki = super::DemoPki::generate(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&pki.key), 0o600);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
