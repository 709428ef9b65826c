//! Limit keys: the unit a client address is limited and blocked as
//! ([`client_unit`]) and the hashed keys of addresses and API keys.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The unit a client address is limited and blocked as: an IPv4 address
/// (also when written v4-mapped), or an IPv6 /64, the smallest prefix a
/// subscriber normally gets: one host can use a whole /64, so limiting per
/// /128 would hand it 2^64 fresh bursts.
#[inline]
pub fn client_unit(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(a) & !((1u128 << 64) - 1),
        )),
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
