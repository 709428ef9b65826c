//! The sticky key of a request: which value pins a user to a release
//! track. Shared by the data plane and `/v1/explain`, so both agree. It
//! lives here, next to [`sticky_hash`], because it reads only the table
//! and the request headers (and so can be fuzzed without Pingora).

use std::net::IpAddr;

use http::HeaderMap;

use crate::model::StickySource;
use crate::route::sticky_hash;
use crate::RoutingTable;

/// Hash of the request's sticky key: the first configured source present,
/// else the client address.
pub fn sticky_of(table: &RoutingTable, headers: &HeaderMap, client: IpAddr) -> u64 {
    sticky_for(table, sticky_key(table, headers), client)
}

/// The raw sticky key of a request: the value of the first configured
/// source that is present and non-empty; `None` means "use the client
/// address".
pub fn sticky_key<'a>(table: &RoutingTable, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    table.release.sticky.iter().find_map(|source| {
        let value = match source {
            StickySource::Header(name) => headers.get(name).map(|v| v.as_bytes()),
            StickySource::Cookie(name) => cookie(headers, name),
        };
        value.filter(|v| !v.is_empty())
    })
}

/// The sticky hash of a key, or of the client address when there is none.
pub fn sticky_for(table: &RoutingTable, key: Option<&[u8]>, client: IpAddr) -> u64 {
    let salt = table.release.salt.as_bytes();
    match (key, client) {
        (Some(k), _) => sticky_hash(salt, k),
        (None, IpAddr::V4(v4)) => sticky_hash(salt, &v4.octets()),
        (None, IpAddr::V6(v6)) => sticky_hash(salt, &v6.octets()),
    }
}

/// The value of cookie `name`, across every `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, COOKIE};

    /// The covergen table with the API key header first, then a cookie.
    fn table() -> RoutingTable {
        let toml = crate::COVERGEN_TOML.replace(
            "sticky_keys = [\"header:x-api-key\"]",
            "sticky_keys = [\"header:x-api-key\", \"cookie:uid\"]",
        );
        let t = crate::compile(&crate::parse::from_toml(&toml).unwrap()).unwrap();
        assert_eq!(
            t.release.sticky.len(),
            2,
            "the test's table edit did not apply"
        );
        t
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9));

    #[test]
    fn the_first_source_present_and_non_empty_is_the_key() {
        let t = table();
        let both = headers(&[("x-api-key", "k1"), ("cookie", "uid=u1")]);
        assert_eq!(sticky_key(&t, &both), Some(&b"k1"[..]));
        // An empty header counts as absent: the cookie is next.
        let empty = headers(&[("x-api-key", ""), ("cookie", "uid=u1")]);
        assert_eq!(sticky_key(&t, &empty), Some(&b"u1"[..]));
        assert_eq!(sticky_key(&t, &headers(&[("cookie", "uid=")])), None);
        assert_eq!(sticky_key(&t, &headers(&[("x-other", "k1")])), None);
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name_in_any_cookie_header() {
        let h = headers(&[("cookie", "a=1; xuid=no"), ("cookie", "b=2;  uid=u7 ; c=3")]);
        assert_eq!(cookie(&h, "uid"), Some(&b"u7"[..]));
        assert_eq!(cookie(&h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie(&h, "ui"), None);
        assert_eq!(cookie(&headers(&[("x", "uid=1")]), "uid"), None);
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(b"uid=\xff").unwrap());
        assert_eq!(cookie(&h, "uid"), None, "a value that is not text");
    }

    #[test]
    fn a_key_pins_the_user_whatever_the_address_and_none_falls_back_to_it() {
        let t = table();
        let k1 = sticky_for(&t, Some(b"k1"), V4);
        assert_eq!(
            k1,
            sticky_for(&t, Some(b"k1"), OTHER),
            "the key, not the address"
        );
        assert_eq!(k1, sticky_hash(t.release.salt.as_bytes(), b"k1"));
        assert_ne!(k1, sticky_for(&t, Some(b"k2"), V4));
        let by_addr = sticky_for(&t, None, V4);
        assert_eq!(
            by_addr,
            sticky_hash(t.release.salt.as_bytes(), &[203, 0, 113, 7])
        );
        assert_ne!(by_addr, sticky_for(&t, None, OTHER));
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let IpAddr::V6(a) = v6 else { unreachable!() };
        assert_eq!(
            sticky_for(&t, None, v6),
            sticky_hash(t.release.salt.as_bytes(), &a.octets())
        );
        // A request's hash is its key's, through the headers.
        let h = headers(&[("cookie", "uid=u1")]);
        assert_eq!(sticky_of(&t, &h, V4), sticky_for(&t, Some(b"u1"), OTHER));
        assert_eq!(sticky_of(&t, &HeaderMap::new(), V4), by_addr);
    }
}
