//! Pingora's `fail_to_proxy`: a request that failed on the way (no
//! upstream left, an origin that broke, a client that sent garbage) gets
//! the status its error implies, written by the one refusal writer.

use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::{FailToProxy, Session};

use super::ctx::Ctx;
use super::refusal::{zone_name, Refusal, RefusalKind};

/// Answers a request that failed on the way (Pingora's `fail_to_proxy`):
/// the status the error implies, an exhausted zone's JSON 503, and a
/// connection that is not reused.
pub(super) async fn fail(session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
    let code = match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            _ => 500,
        },
    };
    // The connection is not reused after an error; say so, so clients do
    // not race a request onto a closing connection.
    session.as_downstream_mut().set_keepalive(None);
    // A timeout while the client's body was still arriving is the client's
    // (as nginx's `client_body_timeout`): 408, not the origin's 502/504.
    let body_timeout = ctx.client_fault && code >= 500 && super::upstream::is_timeout(e.etype());
    let (code, refusal) = if body_timeout {
        let (kind, refusal) = Refusal::body_timeout(
            "the request body stopped arriving before the origin could answer".to_string(),
        );
        ctx.refusal = Some(kind);
        (408, Some(refusal))
    } else if code == 503 && ctx.refusal == Some(RefusalKind::ZoneExhausted) {
        let zone = ctx.class.and_then(|c| c.zone);
        (
            code,
            Some(Refusal::zone_exhausted(zone_name(&ctx.snap.table, zone))),
        )
    } else if code > 0 {
        let region = ctx
            .route
            .route()
            .and_then(|r| ctx.snap.region_header.get(r.region.index()).cloned());
        (code, Some(Refusal::bare(code, region)))
    } else {
        (code, None)
    };
    if let Some(refusal) = refusal {
        if let Err(err) = refusal.write(session).await {
            tracing::debug!(error = %err, "cannot write error response downstream");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}
