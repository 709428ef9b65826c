//! TLS to the rate-limit store: `rediss://HOST:PORT` (one Redis) and
//! `rediss+cluster://H1:P1,H2:P2` (a Redis Cluster), through redis-rs's
//! rustls support (no OpenSSL).
//!
//! The server's certificate is always verified: against `--redis-ca`
//! (only that CA is trusted) or, without it, the system's roots; it must
//! name the host of the URL (an IP address must be in its IP SANs). There
//! is no insecure mode: redis-rs's `#insecure` URL fragment is refused.
//! `--redis-cert` and `--redis-key` give a client certificate for servers
//! with `tls-auth-clients yes`.
//!
//! The files are read once, at start-up, through the project's one loader
//! of named files (`edgesteer_config::pem`: regular files only, size
//! capped) and checked the way the connection will use them, so a bad
//! file stops the proxy with an error naming its flag.

use std::path::PathBuf;
use std::sync::Arc;

use edgesteer_config::pem;
use redis::{ClientTlsConfig, TlsCertificates};

/// The files named by `--redis-ca`, `--redis-cert` and `--redis-key`.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// The TLS material of the store's connections, read and checked.
#[derive(Clone)]
pub struct RedisTls {
    certs: TlsCertificates,
    files: TlsFiles,
}

impl std::fmt::Debug for RedisTls {
    // The paths only: never the key's bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// Whether `url` asks for TLS (`rediss://` or `rediss+cluster://`).
pub fn is_tls(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("rediss://") || lower.starts_with("rediss+cluster://")
}

impl RedisTls {
    /// Reads and checks `files`: the CA must hold certificates usable as
    /// trust anchors, the client certificate and key must parse and belong
    /// together. Errors name the flag and the file.
    pub fn load(files: &TlsFiles) -> Result<RedisTls, String> {
        // redis-rs builds its rustls configs with the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let root_cert = match &files.ca {
            Some(ca) => {
                for (i, c) in flag("--redis-ca", pem::certs(ca))?.into_iter().enumerate() {
                    roots.add(c).map_err(|e| {
                        format!(
                            "--redis-ca {}: certificate {i} is not a usable CA certificate: {e}",
                            ca.display()
                        )
                    })?;
                }
                Some(flag("--redis-ca", pem::read_bounded(ca))?)
            }
            None => None,
        };
        let client_tls = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                let chain = flag("--redis-cert", pem::certs(cert))?;
                let private = flag("--redis-key", pem::private_key(key))?;
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS to Redis: {e}"))?
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| {
                        format!(
                            "--redis-cert {} and --redis-key {} do not make a usable pair: {e}",
                            cert.display(),
                            key.display()
                        )
                    })?;
                Some(ClientTlsConfig {
                    client_cert: flag("--redis-cert", pem::read_bounded(cert))?,
                    client_key: flag("--redis-key", pem::read_bounded(key))?,
                })
            }
            (None, None) => None,
            _ => return Err("--redis-cert and --redis-key go together".into()),
        };
        Ok(RedisTls {
            certs: TlsCertificates {
                client_tls,
                root_cert,
            },
            files: files.clone(),
        })
    }

    /// What redis-rs takes.
    pub(crate) fn certificates(&self) -> TlsCertificates {
        self.certs.clone()
    }
}

fn flag<T>(name: &str, r: Result<T, pem::FileError>) -> Result<T, String> {
    r.map_err(|e| format!("{name} {e}"))
}

/// What to do about a TLS error (to append to its message), if `text` is
/// one: the rustls error is wrapped, so its text is what tells.
pub(crate) fn advice(text: &str) -> Option<&'static str> {
    if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
        Some(" (TLS: the server's certificate was refused: it must chain to the CA of --redis-ca, or to a system root without it, and name the URL's host in its SANs)")
    } else if text.contains("corrupt message") || text.contains("InvalidContentType") {
        Some(" (TLS: the server did not answer in TLS: is that port its tls-port? a plain port needs redis:// or redis+cluster://)")
    } else if text.contains("CertificateRequired") || text.contains("peer sent no certificates") {
        Some(" (TLS: the server wants a client certificate (tls-auth-clients yes): give --redis-cert and --redis-key)")
    } else if text.contains("received fatal alert") {
        Some(" (TLS: the server refused the handshake: check its tls-* settings and, if it checks clients, --redis-cert and --redis-key)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tls_urls_are_told_apart() {
        assert!(is_tls("rediss://h:6380"));
        assert!(is_tls("REDISS+CLUSTER://h:7000"));
        assert!(!is_tls("redis://h:6379"));
        assert!(!is_tls("redis+cluster://h:7000"));
    }

    #[test]
    fn unreadable_or_wrong_files_name_their_flag() {
        let none = RedisTls::load(&TlsFiles::default()).unwrap();
        assert!(none.certs.root_cert.is_none() && none.certs.client_tls.is_none());
        let dev = TlsFiles {
            ca: Some("/dev/zero".into()),
            ..TlsFiles::default()
        };
        let e = RedisTls::load(&dev).unwrap_err();
        assert!(
            e.starts_with("--redis-ca /dev/zero") && e.contains("character device"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("edgesteer-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = RedisTls::load(&TlsFiles {
            ca: Some(junk.clone()),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(
            e.starts_with("--redis-ca ") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = RedisTls::load(&TlsFiles {
            cert: Some(junk.clone()),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(e.contains("--redis-key"), "{e}");
        let e = RedisTls::load(&TlsFiles {
            cert: Some(junk.clone()),
            key: Some(junk),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(e.starts_with("--redis-cert "), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_errors_say_what_to_check() {
        let unknown = "invalid peer certificate: UnknownIssuer";
        assert!(advice(unknown).is_some_and(|a| a.contains("--redis-ca")));
        let plain = "received corrupt message of type InvalidContentType";
        assert!(advice(plain).is_some_and(|a| a.contains("tls-port")));
        assert!(advice("connection refused").is_none());
    }
}
