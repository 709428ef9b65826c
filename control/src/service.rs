//! The config service's router: every endpoint of docs/api.md and the
//! handler that serves it.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, patch, post};
use axum::Router;

use crate::guard::guard;
use crate::{console, preview, proxies, rollout, table};

// These lived here; kept at these paths for the proxy and older callers.
pub use crate::http::ApiError;
pub use crate::state::{Control, StartError};
pub use edgesteer_control_api::api::{Ack, FleetEntry};
pub use edgesteer_control_api::auth::{bearer, token_name, Token};

/// Default cap on request bodies (a 10,000-backend table is about 1 MB).
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The router; `body_limit` caps request bodies. Every route but
/// `/healthz` and the console's page (`/ui`) needs a token whose role allows it (see [`crate::guard`]).
pub fn router(control: Arc<Control>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/table", get(table::get_table).put(table::put_table))
        .route("/v1/regions/{region}", patch(table::patch_region))
        .route("/v1/rollback", post(table::rollback))
        .route("/v1/history", get(table::history))
        .route("/v1/versions/{version}", get(table::get_version))
        .route("/v1/diff", get(table::get_diff))
        .route("/v1/watch", get(proxies::watch_table))
        .route("/v1/fleet", get(proxies::fleet))
        .route("/v1/fleet/ack", post(proxies::ack))
        .route("/v1/stats", post(proxies::post_stats))
        .route("/v1/rollouts", get(rollout::get_rollouts))
        .route("/v1/rollouts/{region}", post(rollout::post_rollout))
        .route("/metrics", get(proxies::metrics))
        .route("/v1/whoami", get(console::whoami))
        .route("/v1/live", get(console::live))
        .route("/v1/explain", get(console::explain))
        .route("/v1/preview", post(preview::preview))
        .route_layer(from_fn_with_state(control.clone(), guard))
        .route("/healthz", get(|| async { "ok\n" }))
        // The console's page and assets hold no data (it comes from the
        // API above, with the token the page sends), so they need none.
        .route("/ui", get(console::index))
        .route("/ui/", get(console::index))
        .route("/ui/app.js", get(console::app_js))
        .route("/ui/app.css", get(console::app_css))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(control)
}
