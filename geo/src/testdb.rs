//! Builds small MaxMind-format databases for tests, in either schema.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use maxminddb_writer::Database;
use serde::Serialize;

/// Which record layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// GeoIP2/GeoLite2/DB-IP: `{country: {iso_code}, continent: {code}}`.
    GeoIp2,
    /// ip-location-db: `{country_code}`, no continent.
    CountryCode,
}

#[derive(Serialize)]
struct Iso<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct Code<'a> {
    code: &'a str,
}

#[derive(Serialize)]
struct GeoIp2Record<'a> {
    country: Iso<'a>,
    continent: Code<'a>,
    names: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct FlatRecord<'a> {
    country_code: &'a str,
}

/// Writes an IPv6-tree database (IPv4 networks live under `::/96`, as in
/// real databases) mapping each network to a country. For the GeoIP2
/// schema the continent is given explicitly so tests can check it is read
/// from the database rather than the built-in table.
pub fn build(schema: Schema, entries: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.binary_format_major_version = 2;
    db.metadata.binary_format_minor_version = 0;
    db.metadata.database_type = match schema {
        Schema::GeoIp2 => "edgesteer-test-GeoIP2-Country".into(),
        Schema::CountryCode => "edgesteer-test-country-code".into(),
    };
    db.metadata.languages = vec!["en".into()];
    for &(cidr, country, continent) in entries {
        let net: IpNet = match cidr.parse() {
            Ok(n) => n,
            Err(e) => panic!("test database: bad CIDR {cidr}: {e}"),
        };
        let data = match schema {
            Schema::GeoIp2 => db.insert_value(GeoIp2Record {
                country: Iso { iso_code: country },
                continent: Code { code: continent },
                names: BTreeMap::from([("en", "test")]),
            }),
            Schema::CountryCode => db.insert_value(FlatRecord {
                country_code: country,
            }),
        };
        let data = match data {
            Ok(d) => d,
            Err(e) => panic!("test database: cannot encode record: {e}"),
        };
        let path = match net {
            IpNet::V4(n) => IpAddrWithMask::new(
                IpAddr::V6(n.network().to_ipv6_compatible()),
                96 + n.prefix_len(),
            ),
            IpNet::V6(n) => IpAddrWithMask::new(IpAddr::V6(n.network()), n.prefix_len()),
        };
        db.insert_node(path, data);
    }
    match db.write_to(Vec::new()) {
        Ok(v) => v,
        Err(e) => panic!("test database: cannot write: {e}"),
    }
}

/// The addresses the project's tests use, one per place they care about.
/// `(cidr, country, continent)`; documentation and private ranges are
/// deliberately absent because the lookup never reaches the database for them.
pub const SAMPLE: &[(&str, &str, &str)] = &[
    ("3.0.0.0/8", "US", "NA"),
    ("5.0.0.0/16", "DE", "EU"),
    ("5.1.0.0/16", "FR", "EU"),
    ("5.2.0.0/16", "GB", "EU"),
    ("5.3.0.0/16", "CY", "AS"),
    ("31.0.0.0/16", "AE", "AS"),
    ("36.0.0.0/8", "CN", "AS"),
    ("43.0.0.0/16", "HK", "AS"),
    ("43.1.0.0/16", "JP", "AS"),
    ("43.2.0.0/16", "TW", "AS"),
    ("43.3.0.0/16", "SG", "AS"),
    ("1.0.0.0/16", "AU", "OC"),
    ("41.0.0.0/16", "ZA", "AF"),
    ("41.1.0.0/16", "NG", "AF"),
    ("177.0.0.0/16", "BR", "SA"),
    ("24.0.0.0/16", "CA", "NA"),
    ("45.0.0.0/16", "AQ", "AN"),
    ("2a00:1450::/32", "DE", "EU"),
    ("2400:cb00::/32", "CN", "AS"),
    ("2600:1f00::/24", "US", "NA"),
];

/// One address inside [`SAMPLE`] per country.
pub fn sample_ip(country: &str) -> IpAddr {
    let ip = match country {
        "US" => "3.3.3.3",
        "DE" => "5.0.1.1",
        "FR" => "5.1.1.1",
        "GB" => "5.2.1.1",
        "CY" => "5.3.1.1",
        "AE" => "31.0.1.1",
        "CN" => "36.1.1.1",
        "HK" => "43.0.1.1",
        "JP" => "43.1.1.1",
        "TW" => "43.2.1.1",
        "SG" => "43.3.1.1",
        "AU" => "1.0.1.1",
        "ZA" => "41.0.1.1",
        "NG" => "41.1.1.1",
        "BR" => "177.0.1.1",
        "CA" => "24.0.1.1",
        "AQ" => "45.0.1.1",
        "DE6" => "2a00:1450::1",
        "CN6" => "2400:cb00::1",
        "US6" => "2600:1f00::1",
        other => panic!("no sample address for {other}"),
    };
    match ip.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("sample address {ip}: {e}"),
    }
}
