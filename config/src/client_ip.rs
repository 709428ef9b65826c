//! Who the client is: the socket peer, unless the peer is a trusted proxy,
//! in which case the right-most untrusted address of `X-Forwarded-For` (or
//! of `Forwarded: for=` when there is no `X-Forwarded-For`).
//!
//! Walking from the right matters: everything left of the first untrusted
//! hop was written by a party we do not trust, so a client cannot choose
//! its own address (and therefore its country or zone) by sending a header.
//!
//! A hop is an address, `ipv4:port`, `[ipv6]` or `[ipv6]:port` (Azure
//! Application Gateway and some CDNs write ports). A hop reached by the
//! walk that is none of these cannot be attributed to anyone: the client is
//! then [`UNKNOWN_CLIENT`], never the trusted proxy that sent it, so a rate
//! limit or block on such requests never lands on the balancer's address
//! (and with it on every client behind it). The request is served; such
//! requests share one limit key, that address's.

use std::net::{IpAddr, Ipv6Addr};

use crate::model::canonical_ip;
use crate::RoutingTable;
use http::{HeaderMap, HeaderName};

/// The client of a request whose forwarding header has a hop that cannot be
/// parsed: `100::` (RFC 6666, the discard-only prefix; never a real
/// client, and outside every trusted range a table may name).
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0));

/// Resolves the client address for a request from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, table: &RoutingTable) -> IpAddr {
    let peer = canonical_ip(peer);
    if !table.is_trusted_proxy(peer) {
        return peer;
    }
    if let Some(h) = hops(headers, &X_FORWARDED_FOR, hop_addr) {
        return walk(peer, h, table);
    }
    if let Some(h) = hops(headers, &http::header::FORWARDED, forwarded_for) {
        return walk(peer, h, table);
    }
    peer
}

/// `X-Forwarded-For`, parsed once (a `&str` name is parsed per lookup).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The hops of every `name` header line, right to left, each parsed by
/// `hop`; `None` when the request has no such header.
fn hops<'a>(
    headers: &'a HeaderMap,
    name: &'static HeaderName,
    hop: impl Fn(&'a str) -> Option<IpAddr> + 'a,
) -> Option<impl Iterator<Item = Option<IpAddr>> + 'a> {
    let lines = headers.get_all(name);
    lines.iter().next()?;
    Some(
        lines
            .into_iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .map(hop),
    )
}

/// Right-to-left over the hops: skip trusted proxies, stop at the first
/// untrusted address. An unparsable hop is an unknown client (never the
/// trusted hop to its right).
fn walk(peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>, table: &RoutingTable) -> IpAddr {
    let mut last = peer;
    for hop in hops {
        let Some(ip) = hop.map(canonical_ip) else {
            return UNKNOWN_CLIENT;
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
    hop_addr(value.trim_matches('"'))
}

/// One hop: `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`.
fn hop_addr(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Some(rest) = hop.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then(|| ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    let (ip, port) = hop.split_once(':')?;
    is_port(port).then(|| ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use http::HeaderValue;

    fn table(trusted: &[&str]) -> RoutingTable {
        let list: Vec<String> = trusted.iter().map(|t| format!("\"{t}\"")).collect();
        let text = format!(
            "default_region = \"a\"\n[client_ip]\ntrusted_proxies = [{}]\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n",
            list.join(", ")
        );
        crate::compile(&parse::from_toml(&text).unwrap()).unwrap()
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

    /// The client a request from `peer` with these header lines resolves to.
    fn check(t: &RoutingTable, peer: &str, lines: &[(&'static str, &str)], want: &str) {
        let got = client_ip(ip(peer), &headers(lines), t);
        assert_eq!(got, ip(want), "peer {peer}, headers {lines:?}");
    }

    const XFF: &str = "x-forwarded-for";
    const FWD: &str = "forwarded";

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let t = table(&["10.0.0.0/8"]);
        let spoof = [(XFF, "36.1.1.1"), (FWD, "for=36.1.1.1")];
        check(&t, "203.0.113.9", &spoof, "203.0.113.9");
        // No trusted proxies configured at all.
        check(&table(&[]), "10.0.0.1", &spoof, "10.0.0.1");
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted() {
        let t = table(&["10.0.0.0/8", "127.0.0.1"]);
        // A client-supplied spoof on the left is ignored.
        check(
            &t,
            "10.0.0.1",
            &[(XFF, "36.1.1.1, 5.0.1.1, 10.1.1.1")],
            "5.0.1.1",
        );
        // Multiple header lines are one list, in order.
        let lines = [(XFF, "36.1.1.1"), (XFF, "5.0.1.1,10.2.2.2")];
        check(&t, "127.0.0.1", &lines, "5.0.1.1");
        // All hops trusted: the left-most.
        check(&t, "10.0.0.1", &[(XFF, "10.9.9.9, 10.1.1.1")], "10.9.9.9");
        // Garbage reached by the walk is an unknown client, never the
        // trusted hop to its right.
        check(
            &t,
            "10.0.0.1",
            &[(XFF, "5.0.1.1, not-an-ip, 10.1.1.1")],
            "100::",
        );
        // IPv6 and IPv4-mapped forms.
        check(
            &t,
            "::ffff:127.0.0.1",
            &[(XFF, "2a00:1450::1")],
            "2a00:1450::1",
        );
        // No header: the peer.
        check(&t, "10.0.0.1", &[], "10.0.0.1");
    }

    #[test]
    fn forwarded_header() {
        let t = table(&["10.0.0.0/8"]);
        let chain = "for=36.1.1.1, for=\"[2a00:1450::1]:4711\";proto=https, for=10.0.0.2";
        check(&t, "10.0.0.1", &[(FWD, chain)], "2a00:1450::1");
        check(
            &t,
            "10.0.0.1",
            &[(FWD, "for=\"5.0.1.1:8080\";by=10.0.0.1")],
            "5.0.1.1",
        );
        // RFC 7239's `unknown` (and obfuscated names): an unknown client.
        check(&t, "10.0.0.1", &[(FWD, "for=unknown")], "100::");
        check(&t, "10.0.0.1", &[(FWD, "for=_hidden")], "100::");
        // X-Forwarded-For wins when both are present.
        let both = [(FWD, "for=36.1.1.1"), (XFF, "5.0.1.1")];
        check(&t, "10.0.0.1", &both, "5.0.1.1");
    }

    /// Issue 33: hops with ports (Azure Application Gateway) are the
    /// clients they name, each its own; a hop that cannot be parsed never
    /// makes the client the trusted peer.
    #[test]
    fn hops_with_ports_are_distinct_clients_never_the_trusted_peer() {
        let t = table(&["10.0.0.0/8"]);
        let peer = "10.0.0.1";
        check(&t, peer, &[(XFF, "1.1.1.1:1000")], "1.1.1.1");
        check(&t, peer, &[(XFF, "2.2.2.2:2000")], "2.2.2.2");
        check(&t, peer, &[(XFF, "[2001:db8::1]:443")], "2001:db8::1");
        check(&t, peer, &[(XFF, "[2001:db8::2]")], "2001:db8::2");
        check(
            &t,
            peer,
            &[(XFF, "36.1.1.1, 5.0.1.1:80, 10.1.1.1:443")],
            "5.0.1.1",
        );
        for bad in [
            "1.1.1.1:",
            "1.1.1.1:x",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "2001:db8::1:443:",
        ] {
            let got = client_ip(ip(peer), &headers(&[(XFF, bad)]), &t);
            assert_eq!(got, UNKNOWN_CLIENT, "{bad}");
            assert!(!t.is_trusted_proxy(got));
        }
    }
}
