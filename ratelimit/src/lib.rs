//! Rate limiting for edgesteer: owns limiter state (a GCRA cell per policy
//! and key in a sharded map, with idle eviction and a key cap), the abuse
//! block list, and fleet-wide limits through Redis.
//!
//! Policies come from the routing table (`edgesteer_config::ratelimit`);
//! [`Limiter::bind`] attaches them to state that outlives table versions.
//! The request path ([`Limiter::evaluate`]) never awaits anything: global
//! policies count locally and [`global::run_sync`] reconciles with Redis in
//! the background.
//!
//! Files: `limiter.rs` the [`Limiter`] (binding, `evaluate`, stats, sweep),
//! `blocklist.rs` the abuse block list and its fleet outbox, `store.rs` the
//! shared store's status, `state.rs` per-policy key state, `gcra.rs` the
//! cell arithmetic, `global.rs` the Redis syncer.
#![forbid(unsafe_code)]

pub mod blocklist;
pub mod gcra;
pub mod global;
pub mod limiter;
pub mod state;
pub mod store;

pub use blocklist::Block;
pub use gcra::Verdict;
pub use limiter::{
    ip_key, ratelimit_header, retry_after_secs, token_key, Bound, Limiter, Outcome, PolicyStats,
    Quota, Request,
};
pub use store::StoreSnapshot;
