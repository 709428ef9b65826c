//! Rate limiting for edgesteer: owns limiter state (a GCRA cell per policy
//! and key in a sharded map, with idle eviction and a key cap), the abuse
//! block list, and fleet-wide limits through Redis.
//!
//! Policies come from the routing table (`edgesteer_config::ratelimit`);
//! [`Limiter::bind`] attaches them to state that outlives table versions.
//! The request path ([`Limiter::evaluate`]) never awaits anything: global
//! policies count locally and [`global::run_sync`] reconciles with Redis in
//! the background.
#![forbid(unsafe_code)]

pub mod gcra;
pub mod global;
pub mod limiter;
pub mod state;

pub use gcra::Verdict;
pub use limiter::{
    ip_key, ratelimit_header, retry_after_secs, token_key, Block, Bound, Limiter, Outcome,
    PolicyStats, Quota, Request, StoreSnapshot,
};
