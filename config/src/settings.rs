//! The settings blocks of a compiled table and its regions: active health
//! checks, release stickiness, retries, outlier ejection, response headers
//! and how origins are reached (plain or TLS, mTLS identity, ALPN), each
//! with its defaults. Declared from `model.rs`, which re-exports every item,
//! so they are used as `edgesteer_config::model::X`.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Http,
    Tcp,
}

/// Resolved active health-check settings of a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub kind: ProbeKind,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect_status: u16,
    pub expect_body: Option<String>,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    /// A hostname backend whose name answers "no such name" (or no
    /// addresses) this long after its last good answer loses its last
    /// addresses, so a recycled IP stops getting traffic.
    pub dns_forget_after: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            kind: ProbeKind::Http,
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            expect_status: 200,
            expect_body: None,
            unhealthy_after: 3,
            healthy_after: 2,
            dns_forget_after: Duration::from_secs(300),
        }
    }
}

/// Where the sticky key of a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StickySource {
    /// A request header (parsed once, when the table is compiled).
    Header(http::HeaderName),
    /// A cookie by name.
    Cookie(String),
}

#[derive(Clone, Debug)]
pub struct ReleaseSettings {
    pub salt: String,
    pub sticky: Vec<StickySource>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Upstream attempts per request, the first one included.
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub per_try_timeout: Duration,
    pub total_timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 3,
            connect_timeout: Duration::from_secs(1),
            per_try_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
        }
    }
}

/// Passive outlier detection (Envoy-style consecutive-error ejection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// 0 disables.
    pub consecutive_failures: u32,
    /// 0 disables.
    pub consecutive_5xx: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: u32,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        OutlierSettings {
            consecutive_failures: 3,
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderSettings {
    pub track: bool,
    pub version: bool,
}

/// How one region's origins are reached: plain or TLS, what is verified,
/// what is offered. Certificate material is read (and checked) when the
/// table compiles, so a table naming an unreadable file is refused and the
/// proxy never builds a peer from a file that changed under it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UpstreamSettings {
    pub tls: bool,
    /// Server name to send and verify; `None`: the backend's host.
    pub sni: Option<String>,
    /// Verify the certificate chain and name.
    pub verify: bool,
    /// DER certificates of `ca` (`None`: the system roots), and its path.
    pub ca: Option<(String, Vec<Vec<u8>>)>,
    /// Client certificate chain (DER, leaf first) and key (DER), with the
    /// certificate's path, for mTLS.
    pub client: Option<ClientIdentity>,
    pub alpn: UpstreamAlpn,
    pub max_h2_streams: usize,
    /// HTTP/2 flow-control window per request (the connection's is this
    /// times `max_h2_streams`).
    pub h2_window_bytes: u32,
}

/// A client certificate for mTLS to origins.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    pub cert_path: String,
    pub key_path: String,
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// What is offered to an origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamAlpn {
    /// HTTP/1.1 only.
    #[default]
    H1,
    /// h2, else HTTP/1.1 (TLS with ALPN).
    H2H1,
    /// h2 only (TLS), or h2c with prior knowledge (plain).
    H2,
}
