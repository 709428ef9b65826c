//! # edgesteer
//!
//! The data plane and the `edgesteer` binary. Owns the Pingora adapter
//! ([`proxy::EdgeProxy`]), the live routing state ([`steer::Steering`], one
//! `ArcSwap<Snapshot>`), client-IP extraction, TLS termination, metrics,
//! the admin listener, the demo backends and the command line.
//!
//! The routing logic itself is not here: `decide()` and the table model
//! live in `edgesteer-config`, geo lookups in `edgesteer-geo`, backend
//! state in `edgesteer-health`. This crate reads a request, calls them, and
//! acts on the answer.
//!
//! ## Layout
//! - [`proxy`]: the Pingora adapter, one module per phase.
//! - [`steer`]: the live snapshot; [`watch`]: following the config service;
//!   [`stats`] and [`report`]: per-track counts for rollout gates.
//! - [`sticky`]: which key pins a client to its track (who the client is
//!   is `edgesteer_config::client_ip`).
//! - [`server`], [`tls`], [`admin`], [`listener`], [`metrics`],
//!   [`access_log`]: serving and observing; [`lifecycle`]: signals,
//!   upgrades and the runtime directory; [`explain`]: "where would this client go, and why".
//! - [`cli`], [`ctl`], [`demo`]: the binary's commands, the ops CLI and the
//!   demo backends.

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod conn_cap;
pub mod ctl;
pub mod demo;
pub mod explain;
pub mod intake;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod report;
pub mod server;
pub mod stats;
pub mod steer;
pub mod sticky;
pub mod tls;
pub mod tls_deadline;
pub mod watch;
