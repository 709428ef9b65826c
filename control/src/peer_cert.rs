//! The names in a client certificate, read with x509-parser: what `--cert-proxy`
//! matches to let a verified certificate stand in for a `proxy` token.

/// The names in a verified client certificate (mTLS): its subject CN and
/// its DNS SANs, in that order. Put in each request's extensions; the
/// access check maps one listed with `--cert-proxy` to the `proxy` role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCert {
    pub names: Vec<String>,
}

impl PeerCert {
    /// The names of a DER certificate (none if it does not parse).
    pub fn from_der(der: &[u8]) -> PeerCert {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return PeerCert::default();
        };
        let mut names: Vec<String> = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .take(1)
            .collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            names.extend(san.value.general_names.iter().filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            }));
        }
        PeerCert { names }
    }
}
