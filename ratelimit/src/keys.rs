//! Limit keys: the unit a client address is limited and blocked as
//! ([`client_unit`]) and the hashed keys of addresses and API keys.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The NAT64 well-known prefix, `64:ff9b::/96` (RFC 6052): the last 32
/// bits are the IPv4 address of the client behind the translator.
const NAT64: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;

/// The unit a client address is limited and blocked as: an IPv4 address
/// (also when written v4-mapped, or behind NAT64 in `64:ff9b::/96`), or
/// an IPv6 /64, the smallest prefix a subscriber normally gets: one host
/// can use a whole /64, so limiting per /128 would hand it 2^64 fresh
/// bursts. Every IPv4 client behind a NAT64 gateway shares that gateway's
/// /64, so those are keyed by the IPv4 address they embed.
#[inline]
pub fn client_unit(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            if bits >> 32 == NAT64 >> 32 {
                IpAddr::V4(std::net::Ipv4Addr::from(bits as u32))
            } else {
                IpAddr::V6(std::net::Ipv6Addr::from(bits & !((1u128 << 64) - 1)))
            }
        }
    }
}

/// The key of a client address (see [`client_unit`]).
#[inline]
pub fn ip_key(ip: IpAddr) -> u64 {
    let octets = match client_unit(ip) {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    xxh3_64_with_seed(&octets, 0x6970)
}

/// The key of a known API key.
#[inline]
pub fn token_key(token: &[u8]) -> u64 {
    xxh3_64_with_seed(token, 0x006b_6579)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn nat64_clients_are_keyed_by_the_ipv4_address_they_embed() {
        assert_eq!(client_unit(ip("64:ff9b::c633:6407")), ip("198.51.100.7"));
        assert_ne!(
            ip_key(ip("64:ff9b::c633:6407")),
            ip_key(ip("64:ff9b::c633:6408"))
        );
        assert_eq!(ip_key(ip("64:ff9b::c633:6407")), ip_key(ip("198.51.100.7")));
        // Only the well-known /96: a neighbouring prefix is ordinary IPv6.
        assert_eq!(client_unit(ip("64:ff9b:1::c633:6407")), ip("64:ff9b:1::"));
        // Ordinary IPv6 still shares its /64, v4-mapped is IPv4.
        assert_eq!(
            client_unit(ip("2001:db8::1")),
            client_unit(ip("2001:db8::2"))
        );
        assert_eq!(client_unit(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }
}
