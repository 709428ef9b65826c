//! # edgesteer-health
//!
//! Owns what the proxy knows about backends: whether each may take traffic
//! (active HTTP/TCP probes with thresholds and jitter, passive outlier
//! ejection from live traffic), its smoothed RTT (EWMA of probe timings),
//! and its addresses (hostnames resolved with hickory and re-resolved when
//! their TTL expires; every address is probed on its own).
//!
//! State is keyed by the backend's region and identity (its address as
//! written), not by its position in a table, so it survives routing-table
//! reloads for the backends that remain; a backend listed in two regions
//! has a state (and probes) per region, with that region's settings. The request path never touches the registry map:
//! [`HealthRegistry::bind`] resolves each backend's shared [`BackendState`]
//! once per table into a [`TableHealth`] aligned with the table's backend
//! indices, and routing reads one atomic flag per backend from it.
//!
//! ## Layout
//! - [`state`]: backend state, the registry, `TableHealth`.
//! - `eject`: passive reports and ejections under the region's cap.
//! - [`status`]: the `/v1/health` document.
//! - `endpoint`: one resolved address's state ([`Endpoint`]) and its last probe report.
//! - [`probe`]: one HTTP or TCP probe.
//! - [`service`]: the background tasks (probes, DNS, ejection sweep) following the live table.
//! - [`tls`]: how a probe speaks TLS to a backend ([`ProbeTls`]).
#![forbid(unsafe_code)]

mod eject;
mod endpoint;
pub mod probe;
pub mod service;
pub mod state;
pub mod status;
pub mod tls;

pub use probe::tls_reason;
pub use service::{DnsConfig, ProbeTarget};
pub use state::{BackendState, Endpoint, HealthRegistry, Outcome, TableHealth};
pub use status::HealthStatus;
pub use tls::ProbeTls;

#[cfg(test)]
mod eject_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
