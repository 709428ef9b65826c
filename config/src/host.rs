//! Host names as the table writes them and as requests send them: the
//! shape check for pins and backend names, and the normal form a `Host`
//! header is matched in (host pins and rate-limit policies both use it).

/// A `Host` value as matched against the table: no port, no trailing dot
/// (case is compared insensitively by the callers).
pub fn normalize_host(host: &str) -> &str {
    let host = strip_port(host);
    host.strip_suffix('.').unwrap_or(host)
}

/// `host[:port]` or `[v6]:port` -> host.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A DNS host name: dot-separated labels of letters, digits and inner `-`.
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port("api.x.ai:443"), "api.x.ai");
        assert_eq!(strip_port("api.x.ai"), "api.x.ai");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
