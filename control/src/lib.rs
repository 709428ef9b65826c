//! # edgesteer-control
//!
//! The config service: it keeps every version of the routing table with
//! an audit record (who, when, what changed, why), validates and compiles
//! each write before storing it, pushes new versions to proxies by
//! long-poll and collects their acknowledgements and stats, runs the
//! rollout controller, and serves the ops console.
//!
//! The wire types, the client and the token types it shares with proxies
//! and `ctl` are in `edgesteer-control-api`; its transport (TLS, limits,
//! drain) is `edgesteer-listener`. This crate holds what only the service
//! needs: axum, the stores (file, etcd) and x509 names for mTLS.
//!
//! ## Layout
//! - [`store`]: the `Store` trait, the crash-safe `FileStore`, `MemoryStore`;
//!   [`etcd`]: the replicated store.
//! - [`state`]: the service's state ([`Control`]) and its write path.
//! - [`service`]: the router (see docs/api.md); handlers live in
//!   `table` (table endpoints), `proxies` (watch, acks, stats, fleet view)
//!   and [`rollout`]; `guard` is the access check in front of them.
//! - [`rollout`]: the canary rollout controller and its commands; the
//!   figures and gates it judges are in `figures`.
//! - [`console`]: the ops console's page and reads; `live` keeps what it
//!   draws from the proxies' stats.
//! - `preview`: `POST /v1/preview`, the impact of a change before it is
//!   made; [`impact`] computes it (pure) over [`traffic`], each proxy's
//!   requests by country and pin over a rolling window, and
//!   [`impact_limits`] the 429s of rate-limit tiers over [`limit_model`],
//!   the fleet's per-key rates by tier.
//! - `http`, `fleet`, `replicas`, [`peer_cert`]: HTTP plumbing, the fleet
//!   register, what replicas share, and client-certificate names;
//!   `history` the versions kept in memory (the newest 1000), `compiled`
//!   compiles off the async runtime and the current version's compiled
//!   table (for explain).
#![forbid(unsafe_code)]

mod compiled;
pub mod console;
pub mod etcd;
mod etcd_config;
mod etcd_lease;
mod etcd_shared;
mod figures;
mod fleet;
mod guard;
mod history;
mod http;
pub mod impact;
pub mod impact_limits;
mod keys;
pub mod limit_model;
mod live;
pub mod peer_cert;
mod preview;
mod proxies;
mod replicas;
pub mod rollout;
pub mod service;
pub mod state;
pub mod store;
mod table;
#[cfg(test)]
mod tests;
pub mod traffic;

pub use etcd::{EtcdConfig, EtcdStore};
pub use service::{router, DEFAULT_BODY_LIMIT};
pub use state::{Control, StartError};
pub use store::{FileStore, MemoryStore, Store, StoreError, VersionRecord};
