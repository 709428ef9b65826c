//! The HTTP client under [`crate::client::Client`]: its timeouts and, for
//! an `https://` service, the CA it trusts and the certificate it shows.

use std::time::Duration;

/// How the client verifies the service, and what it shows of itself.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM file of the CA(s) to trust instead of the built-in roots
    /// (`--control-ca`, `EDGESTEER_CONTROL_CA`).
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for mTLS (`--control-cert`, `--control-key`).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The client's settings common to plain and TLS services.
pub(crate) fn builder() -> reqwest::ClientBuilder {
    // Under the service's idle bound (75 s), so a pooled connection is
    // not reused just as the service closes it.
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(60))
}

/// An HTTPS-only client trusting only `tls.ca` (when given) and presenting
/// `tls.identity` (when given); the error names the flag at fault.
pub(crate) fn http_client(base: &str, tls: &ClientTls) -> Result<reqwest::Client, String> {
    let mut b = builder().https_only(true);
    if let Some(ca) = &tls.ca {
        let certs = edgesteer_config::pem::certs(ca).map_err(|e| format!("--control-ca {e}"))?;
        b = b.tls_built_in_root_certs(false);
        for der in certs {
            let cert = reqwest::Certificate::from_der(&der)
                .map_err(|e| format!("--control-ca {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = &tls.identity {
        let read = |flag: &str, p: &std::path::Path| {
            edgesteer_config::pem::read_bounded(p).map_err(|e| format!("{flag} {e}"))
        };
        let mut pem = read("--control-key", key)?;
        pem.push(b'\n');
        pem.extend(read("--control-cert", cert)?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "--control-cert {} / --control-key {}: not a PEM certificate and private key: {e}",
                cert.display(),
                key.display()
            )
        })?;
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| format!("the TLS settings for {base} are not usable: {e}"))
}
