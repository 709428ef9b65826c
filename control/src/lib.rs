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
//! - [`store`]: the `Store` trait, the crash-safe `FileStore`, `MemoryStore`.
//! - [`service`]: state, write path, the axum router (see docs/api.md).
//! - [`rollout`]: the canary rollout controller, proxies' stats reports, the rollout API.
//! - [`client`]: typed calls for `ctl` and the proxy's watcher.

pub mod client;
pub mod rollout;
pub mod service;
pub mod store;

pub use service::{bearer, router, token_name, Control, Token, DEFAULT_BODY_LIMIT};
pub use store::{FileStore, MemoryStore, Store, VersionRecord};
