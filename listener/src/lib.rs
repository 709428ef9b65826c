//! # edgesteer-listener
//!
//! The HTTP listener that the config service and the proxy's admin
//! endpoints share, so both are reached the same hardened way: accept
//! loop with a connection cap, optional TLS (and mTLS), HTTP/1.1 and h2,
//! header and idle timeouts, and a graceful drain. It knows no routes and
//! no framework: it serves any `tower` service of hyper requests.
//!
//! ## Layout
//! - [`serve`]: the accept loop, per-connection HTTP, limits and counters.
//! - [`tls`]: the server's rustls settings from PEM files.
//! - `io`: the connection's stream with a write timeout.
#![forbid(unsafe_code)]

mod io;
pub mod serve;
#[cfg(test)]
mod tests;
pub mod tls;

pub use serve::{
    serve_with, App, BoxError, ConnStats, Limits, PeerAddr, PeerCertificate, TlsInfo, Transport,
};
pub use tls::{server_tls, server_tls_with, TlsSetupError};
