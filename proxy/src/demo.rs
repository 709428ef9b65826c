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
    /// When non-zero, every request is answered with this status.
    pub fail_status: Arc<AtomicU16>,
    /// When set, `/health` answers 503.
    pub health_fail: Arc<AtomicBool>,
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
}

/// Starts one backend on `bind` (port 0 picks a free port).
pub async fn spawn_backend(id: Identity, bind: SocketAddr) -> std::io::Result<DemoBackend> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    let fail_status = Arc::new(AtomicU16::new(0));
    let health_fail = Arc::new(AtomicBool::new(false));
    let state = BackendState {
        id: Arc::new(id.clone()),
        served: served.clone(),
        fail_status: fail_status.clone(),
        health_fail: health_fail.clone(),
    };
    let app = Router::new()
        .route("/health", get(health))
        .route("/upload", axum::routing::post(upload))
        .route("/slow", get(slow))
        .fallback(echo)
        .with_state(state);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "demo backend stopped");
        }
    });
    Ok(DemoBackend {
        id,
        addr,
        served,
        fail_status,
        health_fail,
        stop: Some(tx),
    })
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
    s.served.fetch_add(1, Ordering::Relaxed);
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
    let mut out = spec.clone();
    let mut running = Vec::new();
    for (region, r) in out.regions.iter_mut() {
        let mut backends = Vec::with_capacity(r.backends.len());
        for (i, b) in r.backends.iter().enumerate() {
            let track = b.track.clone().unwrap_or_else(|| "stable".into());
            let id = Identity {
                region: region.clone(),
                backend: format!("{region}-{}", i + 1),
                track,
            };
            let backend = spawn_backend(id, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
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
