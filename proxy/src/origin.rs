//! How origins are reached: each region's upstream settings (TLS,
//! verification, CA, client certificate, ALPN) turned, once per table,
//! into what Pingora's peers and the health probes need; and what a TLS
//! failure to an origin was, as a bounded reason.
//!
//! rustls only. Pingora verifies the chain against the region's CA (or
//! the system roots) and the name against the SNI, which defaults to the
//! backend's hostname (an IP backend is checked against the certificate's
//! IP SANs). Pingora's pool keys connections by address, SNI, client
//! certificate and verification, and by these settings' fingerprint (its
//! `group_key`, CA bytes included), so reuse stays per origin identity and
//! trust.

use std::sync::{Arc, OnceLock};

use edgesteer_config::model::{UpstreamAlpn, UpstreamSettings};
use pingora_core::protocols::ALPN;
use pingora_core::utils::tls::{CertKey, WrappedX509};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// One region's upstream settings, ready for every attempt.
pub struct RegionUpstream {
    pub tls: bool,
    pub verify: bool,
    /// The table's `sni`; `None`: each backend's host.
    pub sni: Option<String>,
    pub ca: Option<Arc<[WrappedX509]>>,
    pub client: Option<Arc<CertKey>>,
    pub alpn: ALPN,
    pub max_h2_streams: usize,
    /// HTTP/2 flow-control window per request, and per connection.
    pub h2_stream_window: u32,
    pub h2_connection_window: u32,
    /// What the health probes of this region's backends use (HTTP/1.1).
    pub probe_tls: Option<Arc<rustls::ClientConfig>>,
    /// A hash of the settings, so probes restart only when they change.
    pub fingerprint: u64,
}

/// HTTP/2's largest flow-control window, 2^31 - 1 (RFC 9113, 6.9.1).
const H2_MAX_WINDOW: u32 = i32::MAX as u32;

impl RegionUpstream {
    /// Built when a table is installed. Certificate material was read and
    /// checked when the table compiled; a failure here (it should not
    /// happen) leaves TLS on with that part missing, so verification fails
    /// closed rather than open.
    pub fn new(s: &UpstreamSettings) -> RegionUpstream {
        let ca: Option<Arc<[WrappedX509]>> = s.ca.as_ref().map(|(_, ders)| {
            ders.iter()
                .map(|d| WrappedX509::new(d.clone(), pingora_core::utils::tls::parse_x509))
                .collect::<Vec<_>>()
                .into()
        });
        let client = s
            .client
            .as_ref()
            .map(|c| Arc::new(CertKey::new(c.chain.clone(), c.key.clone())));
        let alpn = match (s.alpn, s.tls) {
            (UpstreamAlpn::H1, _) => ALPN::H1,
            (UpstreamAlpn::H2H1, _) => ALPN::H2H1,
            (UpstreamAlpn::H2, _) => ALPN::H2,
        };
        let probe_tls = if s.tls {
            match probe_config(s) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "upstream TLS settings unusable for health probes; probes will fail");
                    None
                }
            }
        } else {
            None
        };
        RegionUpstream {
            tls: s.tls,
            verify: s.verify,
            sni: s.sni.clone(),
            ca,
            client,
            alpn,
            max_h2_streams: s.max_h2_streams,
            h2_stream_window: s.h2_window_bytes,
            // Every stream's whole window at once: requests whose clients
            // stopped reading cannot leave another none (compile bounds the
            // product under HTTP/2's largest window).
            h2_connection_window: u32::try_from(s.max_h2_streams)
                .ok()
                .and_then(|n| s.h2_window_bytes.checked_mul(n))
                .map_or(H2_MAX_WINDOW, |w| w.min(H2_MAX_WINDOW)),
            probe_tls,
            fingerprint: {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                s.hash(&mut h);
                h.finish()
            },
        }
    }

    /// The server name for a backend whose host is `host`.
    pub fn server_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.sni.as_deref().unwrap_or(host)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's roots, loaded once.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            match rustls_native_certs::load_native_certs() {
                Ok(certs) => {
                    let (_, bad) = roots.add_parsable_certificates(certs);
                    if bad > 0 {
                        tracing::debug!(bad, "system roots skipped");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load the system's CA roots; TLS origins need `ca` in the table")
                }
            }
            Arc::new(roots)
        })
        .clone()
}

/// A rustls client for the health probes of a region, verifying as the
/// proxy does.
fn probe_config(s: &UpstreamSettings) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let roots = match &s.ca {
        Some((_, ders)) => {
            let mut r = rustls::RootCertStore::empty();
            for d in ders {
                r.add(CertificateDer::from(d.clone()))?;
            }
            Arc::new(r)
        }
        None => system_roots(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if s.verify {
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    let mut config = match &s.client {
        Some(c) => builder.with_client_auth_cert(
            c.chain.iter().cloned().map(CertificateDer::from).collect(),
            PrivateKeyDer::try_from(c.key.clone()).map_err(|e| rustls::Error::General(e.into()))?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The probe's TLS for one backend: the config and the name to verify.
pub fn probe_tls(up: &RegionUpstream, host: &str) -> Option<edgesteer_health::ProbeTls> {
    let config = up.probe_tls.clone()?;
    let name = ServerName::try_from(up.server_name(host).to_string()).ok()?;
    Some(edgesteer_health::ProbeTls {
        config,
        name,
        fingerprint: up.fingerprint,
    })
}

/// A backend's host as a server name: its hostname, or its IP address.
pub fn backend_host(addr: &edgesteer_config::model::BackendAddr) -> String {
    match addr {
        edgesteer_config::model::BackendAddr::Socket(sa) => sa.ip().to_string(),
        edgesteer_config::model::BackendAddr::Host { host, .. } => host.clone(),
    }
}

/// `insecure_skip_verify = true`: any certificate. Signatures are still
/// checked (the handshake stays a handshake).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub use edgesteer_health::tls_reason;
