#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! End-to-end tests, one binary (one link of Pingora) with a module per area.

mod cli;
mod console;
mod control;
mod control_writes;
mod edge;
mod edge_conns;
mod failover;
mod lifecycle;
mod observe;
mod origin_tls;
mod ratelimit;
mod ratelimit_fleet;
mod replicas;
mod rollout;
mod routing;
mod tls_h2;
mod trust;
mod trust_listeners;
mod trust_tls;
