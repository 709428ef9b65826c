//! Host names as the table writes them and as requests send them: the
//! shape check for pins and backend names, and the normal form a `Host`
//! header is matched in (host pins and rate-limit policies both use it).

/// A `Host` value as matched against the table: no port, no trailing
/// dots, IPv6 literals without brackets (case is compared insensitively
/// by the callers). Normalising twice changes nothing: `a:80.` and
/// `a..:80` are both `a`, so no spelling dodges a pin or a host-scoped
/// rate limit that its normal form would meet.
pub fn normalize_host(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    if let Some(v6) = bracketed(host) {
        return v6;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            h.trim_end_matches('.')
        }
        _ => host,
    }
}

/// Whether a `Host` value is `uri-host [":" port]` (RFC 9110 7.2, RFC 3986
/// 3.2.2): a bracketed IPv6 literal, or an IPv4 address or registered name
/// of unreserved, sub-delim and `%` characters; then at most a colon and
/// digits. Userinfo, a second colon or a port that is not digits is no host
/// the table could be matched against, so the edge refuses it (400) rather
/// than let a spelling step around a pin or a host-scoped rate limit.
pub fn valid_host_header(v: &str) -> bool {
    let (host, port) = match v.strip_prefix('[') {
        Some(rest) => {
            let Some((literal, after)) = rest.split_once(']') else {
                return false;
            };
            if literal.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after.strip_prefix(':') {
                Some(port) => ("", port),
                None if after.is_empty() => ("", ""),
                None => return false,
            }
        }
        None => v.split_once(':').unwrap_or((v, "")),
    };
    port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b))
}

/// `[v6]` or `[v6]:port` -> `v6`, when `v6` is an IPv6 address; anything
/// else in brackets is not a host we know and stays as written.
fn bracketed(host: &str) -> Option<&str> {
    let (v6, rest) = host.strip_prefix('[')?.split_once(']')?;
    let port_ok = rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    (port_ok && v6.parse::<std::net::Ipv6Addr>().is_ok()).then_some(v6)
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

/// Pins at most this many are scanned; more are looked up in a map (a
/// handful compare faster than they hash, and a pushed table with
/// thousands must not make every request scan them).
const SCAN_AT_MOST: usize = 8;

/// Host pins: a host (normal form) to a region.
#[derive(Clone, Debug, Default)]
pub struct HostPins<R> {
    /// In table order, for explain and docs (and the scan).
    list: Vec<(String, R)>,
    /// Lower-cased host -> (its place in `list`, region), when there are
    /// more than a few.
    map: std::collections::HashMap<String, (usize, R)>,
}

impl<R: Copy> HostPins<R> {
    pub fn new(list: Vec<(String, R)>) -> Self {
        let map = if list.len() > SCAN_AT_MOST {
            list.iter()
                .enumerate()
                .map(|(i, (h, r))| (h.to_ascii_lowercase(), (i, *r)))
                .collect()
        } else {
            Default::default()
        };
        HostPins { list, map }
    }

    /// The region `host` (any spelling: case, port, trailing dot) is
    /// pinned to.
    pub fn get(&self, host: &str) -> Option<R> {
        self.get_slot(host).map(|(_, r)| r)
    }

    /// [`HostPins::get`] with the pin's place in table order (the slot the
    /// proxy counts its traffic in).
    pub fn get_slot(&self, host: &str) -> Option<(usize, R)> {
        if self.list.is_empty() {
            return None;
        }
        let host = normalize_host(host);
        if self.map.is_empty() {
            return self
                .list
                .iter()
                .enumerate()
                .find(|(_, (h, _))| h.eq_ignore_ascii_case(host))
                .map(|(i, &(_, r))| (i, r));
        }
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.map.get(&host.to_ascii_lowercase()).copied()
        } else {
            self.map.get(host).copied()
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, R)> {
        self.list.iter().map(|(h, r)| (h.as_str(), *r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_brackets() {
        assert_eq!(normalize_host("api.x.ai:443"), "api.x.ai");
        assert_eq!(normalize_host("api.x.ai"), "api.x.ai");
        assert_eq!(normalize_host("api.x.ai."), "api.x.ai");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
    }

    #[test]
    fn host_headers_are_uri_host_and_port() {
        for ok in [
            "api.x.ai",
            "api.x.ai:443",
            "API.X.AI.",
            "a:",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "a_b.x",
            "",
        ] {
            assert!(valid_host_header(ok), "{ok:?}");
        }
        for bad in [
            "a:x",
            "a:443:443",
            "u@a",
            "a b",
            "::1",
            "[::1",
            "[a]:80",
            "[::1]x",
            "a:80.",
            "a:123456",
            "a/b",
            "a\\b",
            "a?b",
            "a#b",
            "[::1]:8x",
        ] {
            assert!(!valid_host_header(bad), "{bad:?}");
        }
    }

    /// The property `fuzz/fuzz_targets/host.rs` checks. These used to
    /// normalise to a form that normalised further (`a:80.` -> `a:80` ->
    /// `a`), so the host met its pin or policy only after a second pass.
    #[test]
    fn normal_form_is_stable() {
        for (host, want) in [
            ("a:80.", "a"),
            ("a..", "a"),
            ("a..:80", "a"),
            ("a.:80.", "a"),
            ("[::1].", "::1"),
            ("[[a]]", "[[a]]"),
            ("[a:80", "[a"),
            ("[::1]x", "[::1]x"),
            ("[::1]:80:90", "[::1]:80:90"),
            ("", ""),
            (".", ""),
            (":", ""),
        ] {
            let n = normalize_host(host);
            assert_eq!(n, want, "{host:?}");
            assert_eq!(normalize_host(n), n, "{host:?}");
        }
    }
}
