//! # edgesteer-control
//!
//! Owns the control plane: the config service that keeps every version of
//! the routing table with an audit record (who, when, what changed, why),
//! validates and compiles each write before storing it, pushes new versions
//! to proxies by long-poll and collects their acknowledgements; and the
//! HTTP client that proxies (watch) and `edgesteer ctl` (ops) use.
//!
//! It is a separate crate from `edgesteer-config` because it needs tokio
//! and axum, which the table model deliberately does not.
//!
//! ## Layout
//! - [`api`]: the wire types of every endpoint, shared by service, client and `ctl`.
//! - [`store`]: the `Store` trait, the crash-safe `FileStore`, `MemoryStore`.
//! - [`state`]: the service's state ([`Control`]) and its write path.
//! - [`service`]: the router (see docs/api.md); handlers live in
//!   `table` (table endpoints), `proxies` (watch, acks, stats, fleet view)
//!   and [`rollout`].
//! - [`rollout`]: the canary rollout controller and its commands; the
//!   figures and gates it judges are in `figures`.
//! - `auth`, `http`, `fleet`: tokens, HTTP plumbing, the fleet register.
//! - [`listener`]: the service's transport: accept loop, TLS, timeouts,
//!   connection cap, graceful shutdown.
//! - [`client`]: typed calls for `ctl` and the proxy's watcher (plain HTTP
//!   or TLS verified against a given CA, optionally with a client certificate).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod client;
pub mod console;
pub mod etcd;
mod figures;
mod fleet;
pub mod guard;
mod http;
pub mod listener;
mod proxies;
mod replicas;
pub mod rollout;
pub mod service;
pub mod state;
pub mod store;
mod table;
#[cfg(test)]
mod tests;

pub use auth::{
    bearer, find_token, read_secret_file, read_token_file, token_name, Access, Role, Token,
};
pub use etcd::{EtcdConfig, EtcdStore};
pub use service::{router, DEFAULT_BODY_LIMIT};
pub use state::{Control, StartError};
pub use store::{FileStore, MemoryStore, Store, StoreError, VersionRecord};
