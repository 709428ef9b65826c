#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! End-to-end tests, one binary (one link of Pingora) with a module per area.

mod cli;
mod cli_output;
mod console;
mod control;
mod control_bounds;
mod control_writes;
mod ctl_walk;
mod dns_backends;
mod drain;
mod edge;
mod edge_cap;
mod edge_conns;
mod edge_faults;
mod edge_heads;
mod failover;
mod geodns;
mod geodns_limits;
mod lifecycle;
mod local_state;
mod observe;
mod origin_tls;
mod preview;
mod push_storm;
mod ratelimit;
mod ratelimit_cluster;
mod ratelimit_fleet;
mod ratelimit_store;
mod replicas;
mod rollout;
mod rollout_retries;
mod routing;
mod tls_h2;
mod trust;
mod trust_listeners;
mod trust_tls;
