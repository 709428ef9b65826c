//! The server side of TLS for a listener: certificate chain and key from
//! PEM files (read through the one bounded loader,
//! [`edgesteer_config::pem`]), ALPN h2 and HTTP/1.1, and optionally a CA
//! that client certificates must chain to (mTLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgesteer_config::pem::{self, FileError};

/// Why a TLS setting cannot be used; each names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{flag} {source}")]
    File {
        flag: &'static str,
        source: FileError,
    },
    #[error("--tls-cert {} and --tls-key {} cannot serve TLS together: {reason}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("--client-ca {}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file(flag: &'static str) -> impl Fn(FileError) -> TlsSetupError {
    move |source| TlsSetupError::File { flag, source }
}

/// The server's TLS settings from `--tls-cert` and `--tls-key` (PEM; the
/// certificate file may hold the chain), offering h2 and HTTP/1.1 by ALPN.
/// With `client_ca`, the service asks clients for a certificate signed by
/// it; a client without one may still come in with a bearer token, a
/// client with a bad one is refused at the handshake.
pub fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    server_tls_with(cert, key, client_ca, false)
}

/// [`server_tls`], where `require_client_cert` refuses a handshake
/// without a client certificate that chains to `client_ca`.
pub fn server_tls_with(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain = pem::certs(cert).map_err(file("--tls-cert"))?;
    let private = pem::private_key(key).map_err(file("--tls-key"))?;
    let pair = |reason: String| TlsSetupError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let verifier = client_verifier(path, require_client_cert)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| pair(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    path: &Path,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsSetupError> {
    let bad = |reason: String| TlsSetupError::ClientCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in pem::certs(path).map_err(file("--client-ca"))? {
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let verifier = if required {
        verifier
    } else {
        verifier.allow_unauthenticated()
    };
    verifier.build().map_err(|e| bad(e.to_string()))
}
