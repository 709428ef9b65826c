//! The admin listener: `/healthz`, `/metrics` and the read-only JSON API.
//! It runs as a Pingora background service on its own runtime, so admin
//! traffic never competes with the data plane's worker threads.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::steer::Steering;

pub struct AdminService {
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    steer: Arc<Steering>,
}

impl AdminService {
    /// Binds now, so a taken port is reported at start-up, not later.
    pub fn bind(addr: SocketAddr, steer: Arc<Steering>) -> std::io::Result<AdminService> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(AdminService {
            listener: std::sync::Mutex::new(Some(listener)),
            steer,
        })
    }
}

pub fn router(steer: Arc<Steering>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/table", get(table))
        .route("/v1/health", get(health))
        .route("/v1/explain", get(explain))
        .with_state(steer)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    let snap = steer.current();
    for (state, b) in snap.health.states().iter().zip(&snap.table.backends) {
        let region = &snap.table.region(b.region).name;
        steer
            .metrics
            .backend_healthy
            .with_label_values(&[region.as_str(), b.key.as_str()])
            .set(i64::from(state.is_available()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        steer.metrics.render(),
    )
}

async fn health(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    let snap = steer.current();
    Json(snap.health.status(&snap.table))
}

async fn explain(
    State(steer): State<Arc<Steering>>,
    q: Result<
        axum::extract::Query<crate::explain::Query>,
        axum::extract::rejection::QueryRejection,
    >,
) -> impl IntoResponse {
    match q {
        Ok(axum::extract::Query(q)) => (
            StatusCode::OK,
            Json(crate::explain::explain(&steer.current(), &steer.geo, &q)),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(
                serde_json::json!({ "error": "bad_query", "message": format!("{e}; use ?ip=ADDR[&host=HOST][&key=KEY]") }),
            ),
        ),
    }
}

async fn table(State(steer): State<Arc<Steering>>) -> impl IntoResponse {
    let snap = steer.current();
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "version": snap.version,
            "table": &*snap.spec,
        })),
    )
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin listener unusable");
                return;
            }
        };
        let app = router(self.steer.clone());
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin server stopped");
        }
    }
}
