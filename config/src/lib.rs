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
//! - [`parse`]: text -> wire, errors carry the field path.
//! - [`compile()`]: wire -> model, checks every rule, notably that no path
//!   (failover, mapping, default region) crosses a compliance zone.
//! - [`model`]: the compiled table, index-addressed for the hot path.
//! - [`route`]: `decide()`, the candidate order and track assignment.
//! - [`geo_codes`]: compact country/continent codes and the ISO-3166 table.

pub mod compile;
pub mod diff;
pub mod error;
pub mod geo_codes;
pub mod model;
pub mod parse;
pub mod ratelimit;
pub mod route;
pub mod wire;

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
