//! Test certificates: a CA and leaves signed by it, as PEM files.

use std::path::{Path, PathBuf};

/// A CA and leaf certificates signed by it, written as PEM files.
pub struct TestPki {
    pub ca_pem: String,
    pub leaves: Vec<(PathBuf, PathBuf)>,
}

/// One leaf per name list, each signed by a fresh CA.
pub fn make_pki(dir: &Path, leaves: &[&[&str]]) -> anyhow::Result<TestPki> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    // Distinct subjects: OpenSSL (redis-server, redis-cli) takes a leaf
    // whose subject is its issuer's for a self-signed certificate.
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edgesteer test CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut out = Vec::new();
    for (i, names) in leaves.iter().enumerate() {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let cn = names.first().copied().unwrap_or("edgesteer test leaf");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let c = dir.join(format!("leaf{i}.pem"));
        let k = dir.join(format!("leaf{i}.key"));
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        out.push((c, k));
    }
    Ok(TestPki {
        ca_pem: ca.pem(),
        leaves: out,
    })
}
