//! The sticky key of a request: which value pins a user to a release
//! track. Shared by the data plane and `/v1/explain`, so both agree.

use std::net::IpAddr;

use edgesteer_config::model::StickySource;
use edgesteer_config::route::sticky_hash;
use edgesteer_config::RoutingTable;
use http::HeaderMap;

/// Hash of the request's sticky key: the first configured source present,
/// else the client address.
pub fn sticky_of(table: &RoutingTable, headers: &HeaderMap, client: IpAddr) -> u64 {
    let key = table.release.sticky.iter().find_map(|source| {
        let value = match source {
            StickySource::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes()),
            StickySource::Cookie(name) => cookie(headers, name),
        };
        value.filter(|v| !v.is_empty())
    });
    sticky_for(table, key, client)
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
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
}
