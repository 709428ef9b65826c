//! Who the client is: the socket peer, unless the peer is a trusted proxy,
//! in which case the right-most untrusted address of `X-Forwarded-For` (or
//! of `Forwarded: for=` when there is no `X-Forwarded-For`).
//!
//! Walking from the right matters: everything left of the first untrusted
//! hop was written by a party we do not trust, so a client cannot choose
//! its own address (and therefore its country or zone) by sending a header.

use std::net::IpAddr;

use edgesteer_config::model::canonical_ip;
use edgesteer_config::RoutingTable;
use http::HeaderMap;

/// Resolves the client address for a request from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, table: &RoutingTable) -> IpAddr {
    let peer = canonical_ip(peer);
    if !table.is_trusted_proxy(peer) {
        return peer;
    }
    let xff = headers.get_all("x-forwarded-for");
    if xff.iter().next().is_some() {
        let hops = xff
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .map(|s| s.trim().parse::<IpAddr>().ok());
        return walk(peer, hops, table);
    }
    let fwd = headers.get_all("forwarded");
    if fwd.iter().next().is_some() {
        let hops = fwd
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .map(forwarded_for);
        return walk(peer, hops, table);
    }
    peer
}

/// Right-to-left over the hops: skip trusted proxies, stop at the first
/// untrusted address. An unparsable hop ends the walk at the last good one.
fn walk(peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>, table: &RoutingTable) -> IpAddr {
    let mut last = peer;
    for hop in hops {
        let Some(ip) = hop.map(canonical_ip) else {
            return last;
        };
        if !table.is_trusted_proxy(ip) {
            return ip;
        }
        last = ip;
    }
    last
}

/// The address of the `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = value.parse() {
        return Some(ip);
    }
    // `ipv4:port`
    value.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesteer_config::parse;
    use http::HeaderValue;

    fn table(trusted: &[&str]) -> RoutingTable {
        let list: Vec<String> = trusted.iter().map(|t| format!("\"{t}\"")).collect();
        let text = format!(
            "default_region = \"a\"\n[client_ip]\ntrusted_proxies = [{}]\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n",
            list.join(", ")
        );
        edgesteer_config::compile(&parse::from_toml(&text).unwrap()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let t = table(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "36.1.1.1"),
            ("forwarded", "for=36.1.1.1"),
        ]);
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &t), ip("203.0.113.9"));
        // No trusted proxies configured at all.
        let t = table(&[]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted() {
        let t = table(&["10.0.0.0/8", "127.0.0.1"]);
        // A client-supplied spoof on the left is ignored.
        let h = headers(&[("x-forwarded-for", "36.1.1.1, 5.0.1.1, 10.1.1.1")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("5.0.1.1"));
        // Multiple header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "36.1.1.1"),
            ("x-forwarded-for", "5.0.1.1,10.2.2.2"),
        ]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), ip("5.0.1.1"));
        // All hops trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.9.9.9"));
        // Garbage stops the walk at the last good hop.
        let h = headers(&[("x-forwarded-for", "5.0.1.1, not-an-ip, 10.1.1.1")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.1.1.1"));
        // IPv6 and IPv4-mapped forms.
        let h = headers(&[("x-forwarded-for", "2a00:1450::1")]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &t),
            ip("2a00:1450::1")
        );
        // No header: the peer.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_header() {
        let t = table(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            "for=36.1.1.1, for=\"[2a00:1450::1]:4711\";proto=https, for=10.0.0.2",
        )]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("2a00:1450::1"));
        let h = headers(&[("forwarded", "for=\"5.0.1.1:8080\";by=10.0.0.1")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("5.0.1.1"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
        // X-Forwarded-For wins when both are present.
        let h = headers(&[
            ("forwarded", "for=36.1.1.1"),
            ("x-forwarded-for", "5.0.1.1"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("5.0.1.1"));
    }
}
