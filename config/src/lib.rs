//! # edgesteer-config
//!
//! Owns the routing-table model: the wire format operators write (TOML
//! files, JSON over the API), its validation, and the compiled, immutable
//! [`RoutingTable`] that the data plane reads. It also owns the pure routing
//! decision ([`route::decide`]), because that function is nothing but a
//! reading of the table. Nothing here knows about sockets, tokio or Pingora.
//!
//! ## Layout
//! - [`wire`]: serde types of the table as written (`deny_unknown_fields`).
//! - [`parse`]: text -> wire, errors carry the field path; reading a table
//!   file.
//! - [`compile()`]: wire -> model, checks every rule, notably that no path
//!   (failover, mapping, default region) crosses a compliance zone. One file
//!   per section under `compile/` (zones, geo, pins, client_ip, health,
//!   release, upstream, regions, backends).
//! - [`ratelimit`]: rate-limit policies: the compiled form the limiter
//!   reads, and their validation, one file per section.
//! - `check`: the one error collector both compilers write through, with
//!   the shared range and name rules.
//! - [`error`]: [`ConfigError`], a list of [`FieldError`] `{ path, reason }`.
//! - [`model`]: the compiled table, index-addressed for the hot path;
//!   [`settings`]: its per-region settings blocks and their defaults.
//! - [`ids`]: region, zone and backend indices and region sets.
//! - [`route`]: `decide()`, the candidate order and track assignment.
//! - [`dns`]: the compiled `[dns]` section and `answer()`, the DNS
//!   sibling of `decide()` ([`wire_dns`] is its wire format).
//! - [`client_ip`]: who the client is (peer, or the right-most untrusted
//!   `X-Forwarded-For`/`Forwarded` hop behind trusted proxies).
//! - [`limits`]: the downstream limits (`[limits]`).
//! - [`host`]: host-name shape and the normal form `Host` values match in.
//! - [`sticky`]: the sticky key of a request (header or cookie) and its hash.
//! - [`diff`]: what changed between two tables, for the audit log and
//!   `edgesteer ctl diff`.
//! - [`geo_codes`]: compact country/continent codes and the ISO-3166 table.
//! - [`pem`]: the one bounded loader of files a table or a flag names
//!   (regular files only, size-capped; certificates, keys, secrets).
#![forbid(unsafe_code)]

mod check;
pub mod client_ip;
pub mod compile;
pub mod diff;
pub mod dns;
pub mod error;
pub mod explain;
pub mod geo_codes;
pub mod host;
pub mod ids;
pub mod limits;
pub mod model;
pub mod parse;
pub mod pem;
pub mod ratelimit;
pub mod route;
pub mod settings;
pub mod sticky;
pub mod wire;
pub mod wire_dns;

pub use compile::compile;
pub use error::{ConfigError, FieldError};
pub use geo_codes::{Continent, Country};
pub use model::{
    Backend, BackendAddr, BackendId, ClientClass, RegionId, RegionSet, RoutingTable, Track, ZoneId,
};
pub use wire::TableSpec;

/// The covergen deployment table, embedded so `edgesteer demo` and
/// `edgesteer validate` work from any directory.
pub const COVERGEN_TOML: &str = include_str!("../../examples/covergen.toml");

/// Parses and compiles a TOML table in one step.
pub fn load_toml(text: &str) -> Result<(TableSpec, RoutingTable), ConfigError> {
    let spec = parse::from_toml(text)?;
    let table = compile(&spec)?;
    Ok((spec, table))
}
