//! Decoding a database record into a [`GeoResult`]: the fields of either
//! schema (GeoIP2's `country.iso_code` and `continent.code`, or a flat
//! `country_code`), borrowed from the database, so decoding never
//! allocates; and the prefix length of the network it came from.

use std::net::IpAddr;

use edgesteer_config::{Continent, Country};
use maxminddb::Reader;
use serde::Deserialize;

use crate::{full_len, GeoResult, LookupStatus};

/// The fields we read from either schema; everything else is skipped.
/// Strings are borrowed from the database, so decoding never allocates.
#[derive(Deserialize)]
pub(crate) struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Named<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Named<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentRec<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentRec<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

/// The answer for `ip`, and the prefix length of the database network
/// holding it (the address's full length when the database cannot say).
pub(crate) fn decode<S: AsRef<[u8]>>(reader: &Reader<S>, ip: IpAddr) -> (GeoResult, u8) {
    let full = full_len(ip);
    let looked = match reader.lookup(ip) {
        Ok(l) => l,
        // An IPv6 address in an IPv4-only database lands here too.
        Err(_) => return (GeoResult::empty(LookupStatus::Error), full),
    };
    // An IPv4 address whose network the database holds only above the
    // IPv4 subtree comes back as an IPv6 network: no IPv4 prefix to give.
    let prefix = match looked.network() {
        Ok(n) if n.is_ipv4() == ip.is_ipv4() => n.prefix(),
        _ => full,
    };
    (decode_record(looked.decode::<Record<'_>>()), prefix)
}

pub(crate) fn decode_record(
    rec: Result<Option<Record<'_>>, maxminddb::MaxMindDbError>,
) -> GeoResult {
    let rec = match rec {
        Ok(Some(rec)) => rec,
        Ok(None) => return GeoResult::empty(LookupStatus::NotFound),
        Err(_) => return GeoResult::empty(LookupStatus::Error),
    };
    let code = rec
        .country
        .and_then(|c| c.iso_code)
        .or(rec.country_code)
        .or_else(|| rec.registered_country.and_then(|c| c.iso_code));
    let country = code.and_then(Country::parse);
    let continent = rec
        .continent
        .and_then(|c| c.code)
        .and_then(Continent::parse)
        .or_else(|| country.and_then(Country::builtin_continent));
    match country {
        Some(_) => GeoResult {
            country,
            continent,
            status: LookupStatus::Found,
        },
        None => GeoResult::empty(LookupStatus::NotFound),
    }
}
