//! `retry` and `outlier`: how the proxy treats upstreams that fail, by
//! retrying a request and by ejecting a backend for a while; `upstream`:
//! how it reaches them (TLS, verification, ALPN).

use std::time::Duration;

use crate::check::Errors;
use crate::model::{
    ClientIdentity, OutlierSettings, RetrySettings, UpstreamAlpn, UpstreamSettings,
};
use crate::wire::{TableSpec, UpstreamSpec};

pub(crate) fn retry(spec: &TableSpec, errs: &mut Errors) -> RetrySettings {
    let mut out = RetrySettings::default();
    let r = &spec.retry;
    if let Some(n) = errs.in_range("retry.max_attempts", r.max_attempts, 1..=10, "") {
        out.max_attempts = n;
    }
    for (field, value, slot) in [
        (
            "connect_timeout_ms",
            r.connect_timeout_ms,
            &mut out.connect_timeout,
        ),
        (
            "per_try_timeout_ms",
            r.per_try_timeout_ms,
            &mut out.per_try_timeout,
        ),
        (
            "total_timeout_ms",
            r.total_timeout_ms,
            &mut out.total_timeout,
        ),
    ] {
        if let Some(ms) = errs.in_range(format!("retry.{field}"), value, 1..=600_000, "") {
            *slot = Duration::from_millis(ms);
        }
    }
    out
}

pub(crate) fn outlier(spec: &TableSpec, errs: &mut Errors) -> OutlierSettings {
    let mut out = OutlierSettings::default();
    let o = &spec.outlier;
    for (field, value, slot) in [
        (
            "consecutive_failures",
            o.consecutive_failures,
            &mut out.consecutive_failures,
        ),
        (
            "consecutive_5xx",
            o.consecutive_5xx,
            &mut out.consecutive_5xx,
        ),
    ] {
        let path = format!("outlier.{field}");
        if let Some(n) = errs.in_range(path, value, 0..=1000, " (0 disables)") {
            *slot = n;
        }
    }
    for (field, value, slot) in [
        (
            "base_ejection_ms",
            o.base_ejection_ms,
            &mut out.base_ejection,
        ),
        ("max_ejection_ms", o.max_ejection_ms, &mut out.max_ejection),
    ] {
        let path = format!("outlier.{field}");
        if let Some(ms) = errs.in_range(path, value, 1..=86_400_000, "") {
            *slot = Duration::from_millis(ms);
        }
    }
    errs.check(
        out.max_ejection >= out.base_ejection,
        "outlier.max_ejection_ms",
        "shorter than base_ejection_ms",
    );
    if let Some(p) = o.max_ejection_percent {
        if errs.check(
            p <= 100,
            "outlier.max_ejection_percent",
            format!("{p} is over 100"),
        ) {
            out.max_ejection_percent = p;
        }
    }
    out
}

/// A region's `upstream` (at `path`, already merged over the table-wide
/// one): TLS, verification, the CA and client certificate (read and
/// checked now), ALPN.
pub(crate) fn settings(path: &str, u: &UpstreamSpec, errs: &mut Errors) -> UpstreamSettings {
    let tls = u.tls.unwrap_or(false);
    let verify = u.verify.unwrap_or(true);
    let insecure = u.insecure_skip_verify.unwrap_or(false);
    errs.check(
        verify || insecure,
        format!("{path}.verify"),
        "`verify = false` accepts any certificate (anyone on the path can read and change the traffic); it needs `insecure_skip_verify = true` as well",
    );
    errs.check(
        !insecure || !verify || u.verify.is_none(),
        format!("{path}.insecure_skip_verify"),
        "contradicts `verify = true`",
    );
    let plain_only = |field: &str, set: bool, errs: &mut Errors| {
        errs.check(
            tls || !set,
            format!("{path}.{field}"),
            "only means something with `tls = true`",
        );
    };
    plain_only("sni", u.sni.is_some(), errs);
    plain_only("ca", u.ca.is_some(), errs);
    plain_only("client_cert", u.client_cert.is_some(), errs);
    if let Some(sni) = &u.sni {
        errs.check(
            !sni.is_empty()
                && sni.len() <= 253
                && sni
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)),
            format!("{path}.sni"),
            "not a host name or IP address",
        );
    }
    let ca = u.ca.as_ref().and_then(|p| {
        let certs = read_certs(&format!("{path}.ca"), p, errs)?;
        Some((p.clone(), certs))
    });
    let client = match (&u.client_cert, &u.client_key) {
        (Some(c), Some(k)) => {
            let chain = read_certs(&format!("{path}.client_cert"), c, errs);
            let key = read_key(&format!("{path}.client_key"), k, errs);
            let pair = chain.zip(key).filter(|(chain, key)| {
                // A key of another certificate would fail every handshake
                // with the region's origins (and its probes): refused here,
                // so the last good pair keeps serving.
                let matched = pair_matches(chain, key);
                if let Err(e) = &matched {
                    errs.push(
                        format!("{path}.client_key"),
                        format!("{k} does not go with client_cert {c}: {e}"),
                    );
                }
                matched.is_ok()
            });
            pair.map(|(chain, key)| ClientIdentity {
                cert_path: c.clone(),
                key_path: k.clone(),
                chain,
                key: key.secret_der().to_vec(),
            })
        }
        (Some(_), None) => {
            errs.push(format!("{path}.client_key"), "client_cert needs client_key");
            None
        }
        (None, Some(_)) => {
            errs.push(
                format!("{path}.client_cert"),
                "client_key needs client_cert",
            );
            None
        }
        (None, None) => None,
    };
    let alpn = match u.alpn.as_deref() {
        None => UpstreamAlpn::H1,
        Some(list) => alpn(&format!("{path}.alpn"), list, tls, errs),
    };
    let mut max_h2_streams = 100;
    if let Some(n) = errs.in_range(
        format!("{path}.max_h2_streams"),
        u.max_h2_streams,
        1..=1000,
        "",
    ) {
        max_h2_streams = n as usize;
    }
    let h2_window_bytes = errs
        .in_range(
            format!("{path}.h2_window_bytes"),
            u.h2_window_bytes,
            H2_WINDOW_MIN..=H2_WINDOW_MAX,
            "",
        )
        .unwrap_or(H2_WINDOW_DEFAULT);
    UpstreamSettings {
        tls,
        sni: u.sni.clone(),
        verify,
        ca,
        client,
        alpn,
        max_h2_streams,
        h2_window_bytes,
    }
}

/// HTTP/2's own initial window (RFC 9113, 6.9.2), the default.
const H2_WINDOW_DEFAULT: u32 = 65_535;
/// One frame of the default largest size: a smaller window would cut every
/// DATA frame into pieces.
const H2_WINDOW_MIN: u32 = 16_384;
/// 2 MiB: times the most streams (1,000) it stays under the protocol's
/// largest window, 2^31 - 1, as a connection's window.
const H2_WINDOW_MAX: u32 = 2 << 20;

fn alpn(path: &str, list: &[String], tls: bool, errs: &mut Errors) -> UpstreamAlpn {
    let names: Vec<&str> = list.iter().map(String::as_str).collect();
    match (names.as_slice(), tls) {
        (["http/1.1"], _) => UpstreamAlpn::H1,
        (["h2", "http/1.1"], true) => UpstreamAlpn::H2H1,
        (["h2"], true) | (["h2c"], false) => UpstreamAlpn::H2,
        (["h2c"], true) => {
            errs.push(path, "`h2c` is HTTP/2 without TLS; with `tls = true` use [\"h2\"] or [\"h2\", \"http/1.1\"]");
            UpstreamAlpn::H1
        }
        (_, false) if names.contains(&"h2") => {
            errs.push(
                path,
                "`h2` is negotiated in TLS; without TLS use [\"h2c\"] (prior knowledge)",
            );
            UpstreamAlpn::H1
        }
        _ => {
            errs.push(path, format!("{names:?} is not one of [\"h2\", \"http/1.1\"], [\"h2\"], [\"http/1.1\"] or [\"h2c\"]"));
            UpstreamAlpn::H1
        }
    }
}

/// The certificates of a PEM file, each checked to parse as X.509.
fn read_certs(path: &str, file: &str, errs: &mut Errors) -> Option<Vec<Vec<u8>>> {
    let certs = match crate::pem::certs(std::path::Path::new(file)) {
        Ok(c) => c,
        Err(e) => {
            errs.push(path, e.to_string());
            return None;
        }
    };
    let mut out = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        if let Err(e) = webpki::anchor_from_trusted_cert(der) {
            errs.push(
                path,
                format!("{file}: certificate {i} does not parse: {e:?}"),
            );
            return None;
        }
        out.push(der.as_ref().to_vec());
    }
    Some(out)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1), as DER.
fn read_key(
    path: &str,
    file: &str,
    errs: &mut Errors,
) -> Option<rustls_pki_types::PrivateKeyDer<'static>> {
    match crate::pem::private_key(std::path::Path::new(file)) {
        Ok(k) => Some(k),
        Err(e) => {
            errs.push(path, e.to_string());
            None
        }
    }
}

/// Whether `key` is the private key of `chain`'s first certificate.
fn pair_matches(
    chain: &[Vec<u8>],
    key: &rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<(), String> {
    use rustls::crypto::ring::default_provider;
    let signing = default_provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let chain = chain
        .iter()
        .map(|c| rustls_pki_types::CertificateDer::from(c.clone()))
        .collect();
    rustls::sign::CertifiedKey::new(chain, signing)
        .keys_match()
        .map_err(|e| e.to_string())
}
