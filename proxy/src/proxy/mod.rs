//! The Pingora adapter: [`EdgeProxy`] implements `ProxyHttp` by handing
//! each phase to the module that owns it, in the way Pingora splits its own
//! proxy by phase. It reads the request, calls the pure pieces (client IP,
//! geo, classify, `decide`) and acts on their answer.
//!
//! - [`ctx`]: the per-request context, with the snapshot loaded once.
//! - [`framing`]: ambiguous or oversized request heads (400/431).
//! - [`limits`]: the table's live downstream limits, set per request.
//! - [`admit`]: client address, block list, rate limits (`request_filter`).
//! - [`route`]: geo, classification, pin, sticky key, `decide`; 421/503.
//! - [`upstream`]: the peer per attempt, re-deciding on retry, timeouts,
//!   the retry budget and passive health reports.
//! - [`headers`]: `X-Forwarded-*` upstream, `X-Steer-*`/`RateLimit` down.
//! - [`refusal`]: every answer the proxy writes itself, and one writer.
//! - [`failed`]: `fail_to_proxy`, errors turned into such answers.
//! - [`observe`]: the logging phase (metrics, per-track stats, access log).

mod admit;
mod ctx;
mod failed;
mod framing;
mod headers;
mod limits;
mod observe;
mod refusal;
mod route;
mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use edgesteer_health::Outcome;
use pingora_core::prelude::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use ctx::Ctx;
use refusal::RefusalKind;

use crate::steer::Steering;

pub struct EdgeProxy {
    steer: Arc<Steering>,
    /// `edgesteer_refusals_total{reason}` by [`RefusalKind::index`].
    refusals: Vec<prometheus::IntCounter>,
}

/// The answer to a client error the intake found before Pingora had the
/// request (an unfinished head past its size, a buffered body that
/// stalled), as HTTP/1.1 bytes, counted under its refusal reason.
pub(crate) fn intake_refusal(steer: &Steering, refused: crate::intake::Refused) -> Vec<u8> {
    use crate::intake::Refused;
    let (kind, refusal) = match refused {
        Refused::HeadTooLarge { max } => {
            framing::too_large(format!("the request head is larger than {max} bytes"), None)
        }
        Refused::BadHead => (
            RefusalKind::BadFraming,
            refusal::Refusal::client_error(
                400,
                "bad_request",
                "the request head is not HTTP/1.1 (a request line `METHOD TARGET HTTP/1.1`, then header lines)".into(),
                None,
            ),
        ),
        Refused::BodyTimeout { idle } => refusal::Refusal::body_timeout(format!(
            "the request body sent nothing for {} ms",
            idle.as_millis()
        )),
    };
    steer
        .metrics
        .refusals
        .with_label_values(&[kind.reason()])
        .inc();
    tracing::debug!(
        reason = kind.reason(),
        "client error answered before the request was read"
    );
    refusal.to_http1()
}

impl EdgeProxy {
    pub fn new(steer: Arc<Steering>) -> Self {
        let refusals = RefusalKind::ALL
            .iter()
            .map(|k| steer.metrics.refusals.with_label_values(&[k.reason()]))
            .collect();
        EdgeProxy { steer, refusals }
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.steer.current())
    }

    /// No downstream modules. Pingora's default adds its response
    /// compression module, disabled, which still costs three allocations
    /// and a filter call per request; the proxy does not compress (origins
    /// do, and their encoding passes through).
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.steer.metrics.downstream_active.inc();
        ctx.active = true;
        let raw = || {
            session
                .as_downstream()
                .as_http1()
                .map(|h1| h1.get_headers_raw_bytes())
        };
        let refused = if self.steer.edge_checks {
            let refused = framing::check(session.req_header(), raw, &ctx.snap.table.limits);
            limits::apply(session, &ctx.snap.table.limits);
            refused
        } else {
            None
        };
        if let Some((kind, refusal)) = refused {
            ctx.refusal = Some(kind);
            session.set_keepalive(None);
            refusal.write(session).await?;
            return Ok(true);
        }
        if admit::admit(&self.steer, session, ctx).await? {
            return Ok(true);
        }
        route::route(&self.steer, session, ctx).await
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        upstream::peer(&self.steer, ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        upstream::connect_failed(&self.steer, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        _client_reused: bool,
    ) -> Box<Error> {
        upstream::proxy_failed(&self.steer, peer, session, e, ctx)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        upstream::connected(&self.steer, reused, ctx);
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        headers::forwarded(session, upstream, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        upstream::passive(ctx, Outcome::Status(upstream.status.as_u16()));
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        headers::steer_headers(&self.steer, resp, ctx)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        failed::fail(session, e, ctx).await
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, error: &Error) -> bool {
        use pingora_core::{ErrorSource, ErrorType};
        // A fail-closed 503 is a decision, already counted and logged as such.
        // A client that left or stalled is the client's business (nginx logs
        // its 499 at info): counted in the metrics, logged at debug here.
        let client_gone = matches!(error.esource(), ErrorSource::Downstream)
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed
                    | ErrorType::ReadError
                    | ErrorType::WriteError
                    | ErrorType::ReadTimedout
                    | ErrorType::WriteTimedout
            );
        if client_gone || ctx.client_fault {
            tracing::debug!(error = %error, "request ended by its client");
            return true;
        }
        ctx.refusal == Some(RefusalKind::ZoneExhausted)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        upstream::release_retries(&self.steer, ctx);
        if let Some(c) = ctx.refusal.and_then(|k| self.refusals.get(k.index())) {
            c.inc();
        }
        observe::request_done(&self.steer, session, ctx);
    }
}
