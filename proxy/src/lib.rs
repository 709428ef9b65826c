//! # edgesteer-proxy
//!
//! The data plane, on Pingora. Owns the Pingora adapter
//! ([`proxy::EdgeProxy`]), the request intake in front of it, the live
//! routing state ([`steer::Steering`], one `ArcSwap<Snapshot>`), origins,
//! TLS termination, metrics, the admin listener, and following the config
//! service. It depends on the config service's API crate, never on the
//! service itself; the command line that starts it is the `edgesteer`
//! crate.
//!
//! The routing logic itself is not here: `decide()` and the table model
//! live in `edgesteer-config`, geo lookups in `edgesteer-geo`, backend
//! state in `edgesteer-health`. This crate reads a request, calls them, and
//! acts on the answer.
//!
//! ## Layout
//! - [`proxy`]: the Pingora adapter, one module per phase.
//! - [`conn_cap`]: the connection cap; [`conn_loop`]: each HTTP/1
//!   connection's request loop, with the [`intake`] reading each request
//!   before Pingora's session exists ([`head`]: where a head ends, as
//!   Pingora reads it), its waits timed by one
//!   [`lazy_deadline`]; [`heartbeat`]: the workers' timer heartbeat.
//! - [`steer`]: the live snapshot; [`origin`]: upstream peers and their
//!   TLS, [`cert_watch`] reloading its files; [`watch`]: following the config service; [`stats`] and
//!   [`report`]: per-track counts for rollout gates, with [`traffic`]:
//!   requests by country and host pin for the impact preview.
//! - [`sticky`]: which key pins a client to its track (who the client is
//!   is `edgesteer_config::client_ip`).
//! - [`server`], [`tls`], [`admin`], [`listener`], [`metrics`] (with
//!   [`store_metrics`], the rate-limit Redis Cluster's nodes),
//!   [`access_log`]: serving and observing; [`lifecycle`]: signals,
//!   upgrades and the runtime directory; [`explain`]: "where would this
//!   client go, and why"; [`geodns`]: the DNS listeners on the same
//!   snapshot.

pub mod access_log;
pub mod admin;
pub mod allocator;
pub mod cert_watch;
pub mod conn_cap;
pub mod conn_loop;
pub mod explain;
pub mod geodns;
pub mod head;
pub mod heartbeat;
pub mod intake;
pub mod lazy_deadline;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod origin;
#[cfg(test)]
mod pingora_patches;
pub mod proxy;
pub mod report;
pub mod server;
pub mod stats;
pub mod steer;
pub mod sticky;
pub mod store_metrics;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod tls;
pub mod tls_deadline;
pub mod traffic;
pub mod upkeep;
pub mod watch;
