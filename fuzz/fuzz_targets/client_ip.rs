//! `X-Forwarded-For` / `Forwarded` -> client address.
//!
//! Input (text, so seeds are real header shapes): the first line is
//! `<table 0-4> <peer address>`, every further line `name: value`. The
//! answer must be the peer or an address written somewhere in the chain,
//! and an untrusted peer's headers are never believed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use edgesteer_config::client_ip::{client_ip, UNKNOWN_CLIENT};
use edgesteer_config::model::canonical_ip;
use edgesteer_config::RoutingTable;
use edgesteer_fuzz::{fixture, headers};
use libfuzzer_sys::fuzz_target;

const TRUSTED: [&str; 5] = [
    "",
    r#""10.0.0.0/8", "127.0.0.1""#,
    // The widest trust a table may name (/8 for IPv4, /32 for IPv6).
    r#""0.0.0.0/8", "11.0.0.0/8", "::/32", "2001::/32""#,
    r#""192.168.0.0/16", "fd00::/32""#,
    r#""::1", "127.0.0.0/8", "2001:db8::/32", "10.0.0.0/8""#,
];

fn tables() -> &'static [RoutingTable] {
    static T: OnceLock<Vec<RoutingTable>> = OnceLock::new();
    T.get_or_init(|| {
        TRUSTED
            .iter()
            .map(|t| {
                fixture(&format!(
                    "default_region = \"a\"\n[client_ip]\ntrusted_proxies = [{t}]\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n"
                ))
            })
            .collect()
    })
}

/// Every address written anywhere in the forwarding headers, found
/// independently of the parser under test: split on every delimiter the
/// two formats use, and try each piece with and without a `:port`.
fn written(values: &[&[u8]]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for v in values {
        let text = String::from_utf8_lossy(v);
        for piece in text.split(|c: char| ",;=\"[] \t".contains(c)) {
            if let Ok(ip) = piece.parse::<IpAddr>() {
                out.push(canonical_ip(ip));
            }
            if let Some((h, _)) = piece.rsplit_once(':') {
                if let Ok(ip) = h.parse::<IpAddr>() {
                    out.push(canonical_ip(ip));
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let (which, peer) = first.split_once(' ').unwrap_or(("0", &first));
    let table = &tables()[which.trim().parse::<usize>().unwrap_or(0) % TRUSTED.len()];
    let peer: IpAddr = peer
        .trim()
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));

    let pairs: Vec<(&str, &[u8])> = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&l[..colon]).ok()?;
            let value = l[colon + 1..].strip_prefix(b" ").unwrap_or(&l[colon + 1..]);
            Some((name, value))
        })
        .collect();
    let h = headers(pairs.iter().copied());

    let got = client_ip(peer, &h, table);
    let peer = canonical_ip(peer);
    assert_eq!(got, canonical_ip(got), "answer not canonical");
    if !table.is_trusted_proxy(peer) {
        assert_eq!(got, peer, "an untrusted peer's headers were believed");
        return;
    }
    let values: Vec<&[u8]> = ["x-forwarded-for", "forwarded"]
        .iter()
        .flat_map(|n| h.get_all(*n).iter().map(|v| v.as_bytes()))
        .collect();
    // A hop the walk reaches but cannot read makes the client unknown
    // (one shared key, never the trusted peer that sent it).
    assert!(
        got == peer || got == UNKNOWN_CLIENT || written(&values).contains(&got),
        "{got} is neither the peer {peer}, the unknown client, nor in the chain"
    );
});
