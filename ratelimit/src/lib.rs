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
//! `blocklist.rs` the abuse block list and its fleet outbox, `block.rs` a
//! block-list entry and change, `keys.rs` client units and limit keys,
//! `store.rs` the shared store's status, `state.rs` per-policy key state,
//! `gcra.rs` the cell arithmetic, `global.rs` the Redis syncer,
//! `block_sync.rs` the block list shared through a Redis stream,
//! `reconcile.rs` what both syncers share (the script, dirty keys),
//! `usage.rs` the per-key counts of the impact preview's traffic model
//! (`tally.rs` their word in each key's cell),
//! `cluster.rs` a Redis Cluster's URL and topology, `cluster_sync.rs` its
//! syncer, `cluster_link.rs` its connection and commands, `cluster_view.rs` its status and logs, `slots.rs` hash slots
//! and the key buckets, `tls.rs` TLS to Redis (`rediss://`).
#![forbid(unsafe_code)]

pub mod block;
mod block_sync;
pub mod blocklist;
pub mod cluster;
mod cluster_link;
mod cluster_sync;
mod cluster_view;
pub mod gcra;
pub mod global;
pub mod keys;
pub mod limiter;
mod reconcile;
pub mod slots;
pub mod state;
pub mod store;
mod tally;
pub mod tls;
mod usage;

pub use block::Block;
pub use gcra::Verdict;
pub use keys::{ip_key, token_key};
pub use limiter::{
    ratelimit_header, retry_after_secs, Bound, Limiter, Outcome, PolicyStats, Quota, Request,
};
pub use store::{ClusterStatus, NodeStatus, StoreSnapshot};
