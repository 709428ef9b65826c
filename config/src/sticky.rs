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
