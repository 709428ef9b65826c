#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `client_ip()` against an oracle that knows each hop's meaning from how
//! the test wrote it (never by parsing it): for random peers and random
//! `X-Forwarded-For` / `Forwarded` chains of IPv4, IPv6, IPv4-mapped,
//! ported, bracketed and unparsable hops split over header lines, the client
//! is the peer unless the peer is trusted, else the right-most untrusted
//! hop, [`UNKNOWN_CLIENT`] if an unparsable hop is reached first, and the
//! left-most hop when every hop is trusted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edgesteer_config::client_ip::{client_ip, UNKNOWN_CLIENT};
use edgesteer_config::wire::{BackendSpec, RegionSpec, TableSpec};
use edgesteer_config::{compile, RoutingTable};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn table() -> RoutingTable {
    let mut spec = TableSpec {
        default_region: "a".into(),
        ..Default::default()
    };
    spec.client_ip.trusted_proxies = vec!["10.0.0.0/8".into(), "2001:db8:ffff::/48".into()];
    spec.regions.insert(
        "a".into(),
        RegionSpec {
            backends: vec![BackendSpec {
                address: "127.0.0.1:1".into(),
                weight: 1,
                track: None,
            }],
            ..Default::default()
        },
    );
    compile(&spec).unwrap()
}

/// An address and whether the table trusts it (by construction).
#[derive(Clone, Copy, Debug)]
struct Addr {
    ip: IpAddr,
    trusted: bool,
}

fn addr() -> impl Strategy<Value = Addr> {
    let v4 = |net: u8, trusted| {
        any::<[u8; 3]>().prop_map(move |[a, b, c]| Addr {
            ip: IpAddr::V4(Ipv4Addr::new(net, a, b, c)),
            trusted,
        })
    };
    let v6 = |seg: u16, trusted| {
        any::<u16>().prop_map(move |x| Addr {
            ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, seg, 0, 0, 0, 0, x)),
            trusted,
        })
    };
    prop_oneof![v4(10, true), v4(203, false), v6(0xffff, true), v6(1, false)]
}

/// One hop as written in a header.
#[derive(Clone, Debug)]
enum Hop {
    /// An address, `form` choosing how it is written: plain, with a port,
    /// IPv4 as IPv4-mapped IPv6, IPv6 in brackets (with or without port).
    Ip(Addr, u8, u16),
    /// Something that names no address.
    Garbage(&'static str),
}

impl Hop {
    fn text(&self) -> String {
        match *self {
            Hop::Ip(a, form, port) => match (a.ip, form % 3) {
                (IpAddr::V4(v4), 0) => format!("{v4}"),
                (IpAddr::V4(v4), 1) => format!("{v4}:{port}"),
                (IpAddr::V4(v4), _) => format!("::ffff:{v4}"),
                (IpAddr::V6(v6), 0) => format!("{v6}"),
                (IpAddr::V6(v6), 1) => format!("[{v6}]:{port}"),
                (IpAddr::V6(v6), _) => format!("[{v6}]"),
            },
            Hop::Garbage(g) => g.to_string(),
        }
    }
}

fn hop() -> impl Strategy<Value = Hop> {
    let garbage = prop::sample::select(vec![
        "unknown",
        "_hidden",
        "1.2.3.4:",
        "1.2.3.4:123456",
        "1.2.3.4:x",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[10.0.0.1]",
        "2001:db8::1:443:",
        "",
    ]);
    prop_oneof![
        8 => (addr(), any::<u8>(), any::<u16>()).prop_map(|(a, f, p)| Hop::Ip(a, f, p)),
        1 => garbage.prop_map(Hop::Garbage),
    ]
}

/// The rule, restated: right to left, skip trusted addresses, stop at the
/// first untrusted one; a hop that names no address is an unknown client.
fn oracle(peer: Addr, hops: &[Hop]) -> IpAddr {
    if !peer.trusted {
        return peer.ip;
    }
    let mut last = peer.ip;
    for h in hops.iter().rev() {
        match h {
            Hop::Garbage(_) => return UNKNOWN_CLIENT,
            Hop::Ip(a, _, _) if !a.trusted => return a.ip,
            Hop::Ip(a, _, _) => last = a.ip,
        }
    }
    last
}

/// `hops` written over `lines` header lines (cut points from `cuts`).
fn lines(texts: Vec<String>, cuts: &[bool]) -> Vec<String> {
    let mut out = vec![Vec::new()];
    for (i, t) in texts.into_iter().enumerate() {
        if i > 0 && cuts.get(i).copied().unwrap_or(false) {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().push(t);
    }
    out.into_iter().map(|l| l.join(", ")).collect()
}

fn headers(name: &'static str, lines: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(name, HeaderValue::from_str(l).unwrap());
    }
    h
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        rng_seed: RngSeed::Fixed(31),
        failure_persistence: None,
        // Shrinking these inputs is slow; a failure must be reported fast.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn x_forwarded_for_matches_the_oracle(
        peer in addr(),
        hops in prop::collection::vec(hop(), 0..6),
        cuts in prop::collection::vec(any::<bool>(), 6),
    ) {
        let t = table();
        let want = if hops.is_empty() { peer.ip } else { oracle(peer, &hops) };
        let ls = lines(hops.iter().map(Hop::text).collect(), &cuts);
        let h = if hops.is_empty() { HeaderMap::new() } else { headers("x-forwarded-for", &ls) };
        prop_assert_eq!(client_ip(peer.ip, &h, &t), want, "peer {:?}, {:?}", peer, ls);
        // A spoofed `Forwarded` never changes the answer while XFF is there.
        let mut spoofed = h.clone();
        spoofed.append("forwarded", HeaderValue::from_static("for=203.9.9.9"));
        let want = if hops.is_empty() { oracle(peer, &[Hop::Ip(Addr { ip: "203.9.9.9".parse().unwrap(), trusted: false }, 0, 0)]) } else { want };
        prop_assert_eq!(client_ip(peer.ip, &spoofed, &t), want);
    }

    #[test]
    fn forwarded_matches_the_oracle(
        peer in addr(),
        hops in prop::collection::vec(hop(), 1..6),
        style in prop::collection::vec(0u8..4, 6),
        cuts in prop::collection::vec(any::<bool>(), 6),
    ) {
        let t = table();
        // `for=` in any case, quoted or not, with other parameters around it.
        let elements = hops.iter().zip(&style).map(|(h, s)| match s {
            0 => format!("for={}", h.text()),
            1 => format!("For=\"{}\";proto=https", h.text()),
            2 => format!("by=10.0.0.1;FOR = \"{}\"", h.text()),
            _ => format!("proto=http; for={} ;host=x", h.text()),
        });
        let ls = lines(elements.collect(), &cuts);
        let got = client_ip(peer.ip, &headers("forwarded", &ls), &t);
        prop_assert_eq!(got, oracle(peer, &hops), "peer {:?}, {:?}", peer, ls);
    }
}

#[test]
fn an_element_without_for_is_an_unknown_client() {
    let t = table();
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    for v in ["proto=https", "by=203.0.113.1", "for", "fore=203.0.113.1"] {
        let h = headers("forwarded", &[v.to_string()]);
        assert_eq!(client_ip(peer, &h, &t), UNKNOWN_CLIENT, "{v}");
    }
}
