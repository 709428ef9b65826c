//! # edgesteer-dns
//!
//! Authoritative GeoDNS for the routing table's names, answered from the
//! same table, health view and zones as the HTTP plane, so DNS and HTTP
//! never disagree and no address crosses a zone. The choice of region is
//! `edgesteer_config::dns::answer::answer`, a pure function beside
//! `decide()`; this crate puts it on the wire.
//!
//! - [`query`]: reading a query (header, question, OPT, client subnet)
//!   without allocating.
//! - [`render`]: each table version's answers rendered once as wire bytes.
//! - [`respond`]: one query in, one answer out (REFUSED, NXDOMAIN, NODATA,
//!   BADVERS, FORMERR, TC on overflow, RFC 8482 ANY).
//! - [`rrl`]: response rate limiting with slip.
//! - [`scope`]: client classes by network, siblings of one class merged
//!   (the client-subnet scope).
//! - [`metrics`]: queries, rate limiting, malformed packets, latency.
//! - [`server`]: the UDP sockets and the TCP listener; [`udp`]: the
//!   batched UDP loop (`recvmmsg`/`sendmmsg`).
//! - [`probe`]: each region's edges' health URL, probed.
//! - [`run`]: binding the sockets and starting the listeners.
//!
//! It does not use hickory-server's `Server`: that spawns a task per UDP
//! query and encodes every reply from record objects, which allocates per
//! query; answers here are a lookup and a copy (see docs/design.md).
#![forbid(unsafe_code)]

pub mod metrics;
pub mod probe;
pub mod query;
pub mod render;
pub mod respond;
pub mod rrl;
pub mod run;
pub mod scope;
pub mod server;
pub mod udp;
mod write;

pub use run::{serve, Bound};
pub use server::{DnsServer, Plane, TcpLimits};
