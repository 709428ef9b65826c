//! `client_ip`: the proxies whose forwarding headers are believed.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::check::Errors;

pub(crate) fn trusted_proxies(cidrs: &[String], errs: &mut Errors) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        match parse_cidr(c) {
            Some(n) if n.prefix_len() < widest(&n) => errs.push(
                format!("client_ip.trusted_proxies[{i}]"),
                format!(
                    "`{c}` is wider than /{}: trusting it would let most of the Internet choose its own client address",
                    widest(&n)
                ),
            ),
            Some(n) => out.push(n),
            None => errs.push(
                format!("client_ip.trusted_proxies[{i}]"),
                format!("`{c}` is not an IP address or CIDR"),
            ),
        }
    }
    out
}

/// The widest trusted-proxy network a table may name: /8 for IPv4, /32
/// for IPv6.
fn widest(n: &IpNet) -> u8 {
    match n {
        IpNet::V4(_) => 8,
        IpNet::V6(_) => 32,
    }
}

/// An IP address or CIDR.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
