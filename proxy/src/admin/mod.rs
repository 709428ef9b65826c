//! The admin listener's endpoints: `/healthz`, `/metrics`, the JSON views
//! of the live table, health, rate limits and `/v1/explain`, and the one
//! write, the abuse block list (`POST`/`DELETE /v1/ratelimit/blocks`).
//! With `--admin-token`, every endpoint but `/healthz` and `/metrics`
//! needs a token: reads a `read` or `ops` one, writes an `ops` one, checked
//! by the same [`authorize`] as the config service. Without tokens the
//! listener is open, which start-up allows only on loopback.
//!
//! Routing is a `match` on method and path, served by
//! [`edgesteer_listener`] like the config service: the data plane links
//! no web framework. The handlers are in [`handlers`].

mod handlers;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edgesteer_control_api::auth::{authorize, Access};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::steer::Steering;

/// Largest admin request body (a block request is a few dozen bytes).
const MAX_BODY: usize = 16 * 1024;

/// An answer: status, content type and body.
pub(crate) struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

impl Answer {
    pub(crate) fn json(status: StatusCode, v: &impl serde::Serialize) -> Answer {
        let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
        Answer {
            status,
            content_type: "application/json",
            body: Bytes::from(body),
        }
    }

    /// `{"error": CODE, "message": TEXT}`.
    pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
        let message: String = message.into();
        Answer::json(
            status,
            &serde_json::json!({ "error": code, "message": message }),
        )
    }

    fn text(content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        Answer {
            status: StatusCode::OK,
            content_type,
            body: body.into(),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        resp
    }
}

/// The admin (or, with `full` false, the metrics-only) endpoints as a
/// service the listener serves.
#[derive(Clone)]
pub struct AdminApp {
    steer: Arc<Steering>,
    full: bool,
}

impl AdminApp {
    /// Every admin endpoint.
    pub fn new(steer: Arc<Steering>) -> AdminApp {
        AdminApp { steer, full: true }
    }

    /// `/healthz` and `/metrics` only, for a scraper's own listener.
    pub fn metrics_only(steer: Arc<Steering>) -> AdminApp {
        AdminApp { steer, full: false }
    }
}

impl tower_service::Service<Request<Incoming>> for AdminApp {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move { Ok(app.answer(req).await.into_response()) })
    }
}

/// The routes: path -> which methods it takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Healthz,
    Metrics,
    Table,
    Version,
    Health,
    Explain,
    RateLimit,
    Blocks,
    Block,
}

fn route(path: &str) -> Option<Route> {
    Some(match path {
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/v1/table" => Route::Table,
        "/v1/version" => Route::Version,
        "/v1/health" => Route::Health,
        "/v1/explain" => Route::Explain,
        "/v1/ratelimit" => Route::RateLimit,
        "/v1/ratelimit/blocks" => Route::Blocks,
        p if block_ip(p).is_some() => Route::Block,
        _ => return None,
    })
}

/// The `{ip}` of `/v1/ratelimit/blocks/{ip}` (one non-empty segment).
fn block_ip(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/ratelimit/blocks/")
        .filter(|ip| !ip.is_empty() && !ip.contains('/'))
}

impl AdminApp {
    async fn answer(&self, req: Request<Incoming>) -> Answer {
        let (parts, body) = req.into_parts();
        let Some(route) = route(parts.uri.path())
            .filter(|r| self.full || matches!(r, Route::Healthz | Route::Metrics))
        else {
            return Answer::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
        };
        let read = matches!(parts.method, Method::GET | Method::HEAD);
        let allowed = match route {
            Route::Blocks => read || parts.method == Method::POST,
            Route::Block => parts.method == Method::DELETE,
            _ => read,
        };
        if !allowed {
            return Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {}", parts.method, parts.uri.path()),
            );
        }
        let actor = match route {
            Route::Healthz | Route::Metrics => String::new(),
            _ => match self.guard(&parts, read) {
                Ok(actor) => actor,
                Err(refused) => return refused,
            },
        };
        let steer = &self.steer;
        match (route, read) {
            (Route::Healthz, _) if !crate::lifecycle::signals_armed() => Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "starting: signals are not handled yet",
            ),
            (Route::Healthz, _) => Answer::text("text/plain; charset=utf-8", "ok\n"),
            (Route::Metrics, _) => Answer::text(
                "text/plain; version=0.0.4; charset=utf-8",
                handlers::metrics(steer),
            ),
            (Route::Table, _) => handlers::table(steer),
            (Route::Version, _) => handlers::version(steer),
            (Route::Health, _) => handlers::health(steer),
            (Route::Explain, _) => handlers::explain(steer, parts.uri.query()),
            (Route::RateLimit, _) => handlers::ratelimit(steer),
            (Route::Blocks, true) => handlers::blocks(steer),
            (Route::Blocks, false) => match read_body(body).await {
                Ok(bytes) => handlers::add_block(steer, &actor, &bytes),
                Err(refused) => refused,
            },
            (Route::Block, _) => {
                handlers::lift_block(steer, &actor, block_ip(parts.uri.path()).unwrap_or(""))
            }
        }
    }

    /// The token check; the actor's name for the logs of a write.
    fn guard(&self, parts: &http::request::Parts, read: bool) -> Result<String, Answer> {
        let tokens = &self.steer.admin_tokens;
        if tokens.is_empty() {
            return Ok("admin".into());
        }
        let access = if read { Access::Read } else { Access::Write };
        match authorize(tokens, &parts.headers, access, "--admin-token") {
            Ok(t) => Ok(t.name.clone()),
            Err(r) => {
                tracing::warn!(path = %parts.uri.path(), error = r.error, "admin request refused");
                Err(Answer::error(r.status, r.error, r.message))
            }
        }
    }
}

/// A request body of at most [`MAX_BODY`] bytes.
async fn read_body(body: Incoming) -> Result<Bytes, Answer> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_body",
            format!("the body could not be read (at most {MAX_BODY} bytes): {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_whole_paths_only() {
        assert_eq!(route("/v1/table"), Some(Route::Table));
        assert_eq!(route("/v1/ratelimit/blocks"), Some(Route::Blocks));
        assert_eq!(route("/v1/ratelimit/blocks/10.0.0.1"), Some(Route::Block));
        assert_eq!(route("/v1/ratelimit/blocks/"), None);
        assert_eq!(route("/v1/ratelimit/blocks/a/b"), None);
        assert_eq!(route("/v1/tablex"), None);
        assert_eq!(route("/"), None);
    }
}
