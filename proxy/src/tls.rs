//! TLS termination with rustls: several certificate/key pairs, chosen by
//! SNI (exact name, then `*.` wildcard), the first pair as the default for
//! clients that send no or an unknown name.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate chain file and its private key file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl std::str::FromStr for CertPair {
    type Err = String;

    /// `CERT.pem:KEY.pem`
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((c, k)) if !c.is_empty() && !k.is_empty() => Ok(CertPair {
                cert: c.into(),
                key: k.into(),
            }),
            _ => Err(format!("`{s}` is not CERT.pem:KEY.pem")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("no certificate given; pass --tls-cert CERT.pem:KEY.pem")]
    NoCertificates,
}

/// Picks a certificate by SNI.
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `suffix` of `*.suffix` names, with the leading dot kept.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
    names: Vec<String>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("names", &self.names)
            .finish()
    }
}

impl SniResolver {
    /// Loads every pair; names come from each certificate's subject
    /// alternative names.
    pub fn load(pairs: &[CertPair]) -> Result<SniResolver, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        let mut default = None;
        let mut names = Vec::new();
        for pair in pairs {
            let chain = read_certs(&pair.cert)?;
            let key = read_key(&pair.key)?;
            let signing =
                provider
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| TlsError::Invalid {
                        path: pair.key.clone(),
                        reason: format!("unsupported private key: {e}"),
                    })?;
            let leaf = chain.first().cloned().ok_or_else(|| TlsError::Invalid {
                path: pair.cert.clone(),
                reason: "no certificate in file".into(),
            })?;
            let ck = Arc::new(CertifiedKey::new(chain, signing));
            if let Err(e) = ck.keys_match() {
                return Err(TlsError::Invalid {
                    path: pair.key.clone(),
                    reason: format!(
                        "key does not match certificate {}: {e}",
                        pair.cert.display()
                    ),
                });
            }
            for name in dns_names(&leaf, &pair.cert)? {
                let name = name.to_ascii_lowercase();
                names.push(name.clone());
                if let Some(suffix) = name.strip_prefix('*') {
                    wildcard.push((suffix.to_string(), ck.clone()));
                } else {
                    exact.entry(name).or_insert_with(|| ck.clone());
                }
            }
            default.get_or_insert(ck);
        }
        let default = default.ok_or(TlsError::NoCertificates)?;
        Ok(SniResolver {
            exact,
            wildcard,
            default,
            names,
        })
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(ck) = self.exact.get(&name) {
            return ck.clone();
        }
        // `*.example.com` covers exactly one label left of `.example.com`.
        if let Some(dot) = name.find('.') {
            let suffix = &name[dot..];
            if let Some((_, ck)) = self.wildcard.iter().find(|(s, _)| s == suffix) {
                return ck.clone();
            }
        }
        self.default.clone()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| TlsError::Invalid {
        path: path.to_path_buf(),
        reason: format!("bad PEM: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Invalid {
        path: path.to_path_buf(),
        reason: format!("no usable private key: {e}"),
    })
}

/// DNS names of a leaf certificate, from its subject alternative names.
fn dns_names(leaf: &CertificateDer<'_>, path: &Path) -> Result<Vec<String>, TlsError> {
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| TlsError::Invalid {
        path: path.to_path_buf(),
        reason: format!("cannot parse certificate: {e:?}"),
    })?;
    Ok(cert.valid_dns_names().map(|n| n.to_string()).collect())
}
