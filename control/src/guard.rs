//! The access check in front of every endpoint but `/healthz`: which
//! [`Access`] a request needs (from its method and route), the token that
//! grants it, and the caller handed to the handler. A route nobody listed
//! needs a write token, so a new endpoint is never open by accident.
//! With mTLS, a verified client certificate named by `--cert-proxy`
//! stands in for a `proxy` token on watch, acks and stats.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use edgesteer_control_api::auth::{bearer, Access, Caller, Role};
use edgesteer_listener::{PeerAddr, PeerCertificate};

use crate::http::ApiError;
use crate::peer_cert::PeerCert;
use crate::state::Control;

/// What a request on `route` with `method` needs.
pub(crate) fn access_of(method: &Method, route: &str) -> Access {
    match (method, route) {
        (&Method::GET, "/v1/watch") => Access::Watch,
        (&Method::POST, "/v1/fleet/ack" | "/v1/stats") => Access::Report,
        // A preview computes and never commits: a read.
        (&Method::GET | &Method::HEAD, _) | (&Method::POST, "/v1/preview") => Access::Read,
        _ => Access::Write,
    }
}

/// Refuses requests without a token allowed on their route; otherwise
/// records the [`Caller`] for the handler and passes the request on.
pub(crate) async fn guard(
    State(c): State<Arc<Control>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let access = access_of(req.method(), &route);
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    // mTLS: without a bearer token, a verified client certificate whose
    // name is listed with --cert-proxy may do what a `proxy` token may.
    let by_cert = match req.extensions().get::<PeerCertificate>() {
        Some(PeerCertificate(der))
            if matches!(access, Access::Watch | Access::Report)
                && bearer(req.headers()).is_none() =>
        {
            c.cert_proxy(&PeerCert::from_der(der).names)
                .map(|name| Caller {
                    name: name.to_string(),
                    role: Role::Proxy,
                })
        }
        _ => None,
    };
    let caller = match by_cert {
        Some(caller) => caller,
        None => {
            let token = c.authorize(req.headers(), peer, access)?;
            Caller {
                name: token.name.clone(),
                role: token.role,
            }
        }
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_the_access_it_should() {
        assert_eq!(access_of(&Method::GET, "/v1/watch"), Access::Watch);
        assert_eq!(access_of(&Method::POST, "/v1/stats"), Access::Report);
        assert_eq!(access_of(&Method::POST, "/v1/fleet/ack"), Access::Report);
        assert_eq!(access_of(&Method::GET, "/v1/table"), Access::Read);
        assert_eq!(access_of(&Method::PUT, "/v1/table"), Access::Write);
        assert_eq!(access_of(&Method::POST, "/v1/preview"), Access::Read);
        assert_eq!(access_of(&Method::POST, "/v1/rollback"), Access::Write);
        assert_eq!(access_of(&Method::DELETE, "/v1/anything"), Access::Write);
    }
}
