//! How an active probe speaks TLS to a backend ([`ProbeTls`]): the shared
//! type the service hands to each probe.

use std::sync::Arc;

/// How a probe speaks TLS to a backend: the client config (roots, client
/// certificate, verification) and the name to verify.
#[derive(Clone, Debug)]
pub struct ProbeTls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
    /// Identifies the settings behind `config`: the probe restarts only
    /// when they change, not on every table.
    pub fingerprint: u64,
}

impl PartialEq for ProbeTls {
    fn eq(&self, other: &ProbeTls) -> bool {
        self.name == other.name && self.fingerprint == other.fingerprint
    }
}
