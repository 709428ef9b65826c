use super::*;
use crate::testdb::{build, sample_ip, Schema, SAMPLE};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn country(r: GeoResult) -> Option<&'static str> {
    r.country.map(Country::as_str)
}

#[test]
fn geoip2_schema_v4_and_v6() {
    let db = GeoDb::from_bytes(build(Schema::GeoIp2, SAMPLE)).unwrap();
    for cc in ["US", "DE", "CN", "HK", "AE", "BR", "ZA", "AU"] {
        let r = db.lookup(sample_ip(cc));
        assert_eq!(country(r), Some(cc), "{cc}");
        assert_eq!(r.status, LookupStatus::Found);
    }
    assert_eq!(country(db.lookup(sample_ip("DE6"))), Some("DE"));
    assert_eq!(country(db.lookup(sample_ip("CN6"))), Some("CN"));
    assert_eq!(country(db.lookup(sample_ip("US6"))), Some("US"));
    // The continent comes from the database, not the built-in table: the
    // sample database says CY is in Asia, as GeoIP2 does.
    assert_eq!(db.lookup(sample_ip("CY")).continent, Some(Continent::Asia));
    assert_eq!(
        db.lookup(sample_ip("DE")).continent,
        Some(Continent::Europe)
    );
}

#[test]
fn country_code_schema_uses_builtin_continents() {
    let db = GeoDb::from_bytes(build(Schema::CountryCode, SAMPLE)).unwrap();
    let r = db.lookup(sample_ip("ZA"));
    assert_eq!(country(r), Some("ZA"));
    assert_eq!(r.continent, Some(Continent::Africa));
    let r = db.lookup(sample_ip("DE6"));
    assert_eq!(country(r), Some("DE"));
    assert_eq!(r.continent, Some(Continent::Europe));
}

#[test]
fn private_and_unknown_addresses() {
    let db = GeoDb::from_bytes(build(Schema::GeoIp2, SAMPLE)).unwrap();
    for p in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::",
        "2001:db8::1",
        "::ffff:10.0.0.1",
    ] {
        let r = db.lookup(ip(p));
        assert_eq!(r.status, LookupStatus::Private, "{p}");
        assert_eq!(r.country, None, "{p}");
    }
    let r = db.lookup(ip("200.200.200.200"));
    assert_eq!(r.status, LookupStatus::NotFound);
    assert_eq!(r.country, None);
    // IPv4-mapped IPv6 is looked up as IPv4.
    assert_eq!(country(db.lookup(ip("::ffff:5.0.1.1"))), Some("DE"));
}

#[test]
fn cache_returns_the_same_answers() {
    let db = GeoDb::from_bytes(build(Schema::GeoIp2, SAMPLE)).unwrap();
    for _ in 0..3 {
        for cc in ["US", "DE", "CN", "DE6"] {
            assert_eq!(db.lookup(sample_ip(cc)), db.lookup_uncached(sample_ip(cc)));
        }
    }
}

/// IPv6 addresses that differ only in their top bit are cached apart
/// (the key once cleared that bit).
#[test]
fn the_cache_tells_every_address_apart() {
    let db = GeoDb::from_bytes(build(
        Schema::GeoIp2,
        &[
            ("2400::/12", "JP", "AS"),
            ("a400::/12", "US", "NA"),
            ("5.0.0.0/16", "DE", "EU"),
        ],
    ))
    .unwrap();
    for _ in 0..2 {
        assert_eq!(country(db.lookup(ip("2400::1"))), Some("JP"));
        assert_eq!(country(db.lookup(ip("a400::1"))), Some("US"));
        assert_eq!(country(db.lookup(ip("5.0.0.1"))), Some("DE"));
        assert_eq!(country(db.lookup(ip("::ffff:5.0.0.1"))), Some("DE"));
    }
}

#[test]
fn reload_swaps_the_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    std::fs::write(&path, build(Schema::GeoIp2, &[("5.0.0.0/16", "DE", "EU")])).unwrap();
    let db = GeoDb::open(&path).unwrap();
    assert_eq!(country(db.lookup(ip("5.0.1.1"))), Some("DE"));
    assert!(!db.reload_if_changed().unwrap());

    // Write the new version beside it and rename over, as geoipupdate does.
    let tmp = dir.path().join("geo.mmdb.tmp");
    std::fs::write(
        &tmp,
        build(
            Schema::GeoIp2,
            &[("5.0.0.0/16", "FR", "EU"), ("5.9.0.0/16", "IT", "EU")],
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(db.reload_if_changed().unwrap());
    // The cached DE answer must not survive the swap.
    assert_eq!(country(db.lookup(ip("5.0.1.1"))), Some("FR"));
    assert_eq!(country(db.lookup(ip("5.9.1.1"))), Some("IT"));

    // A corrupt replacement is refused and the previous database keeps serving.
    std::fs::write(&tmp, b"not a database").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(db.reload_if_changed().is_err());
    assert_eq!(country(db.lookup(ip("5.0.1.1"))), Some("FR"));
}

#[test]
fn bad_files_are_clear_errors() {
    let err = GeoDb::open("/nonexistent/geo.mmdb").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/geo.mmdb"), "{err}");
    assert!(GeoDb::from_bytes(b"garbage".to_vec()).is_err());
}

#[test]
fn bundled_database_places_well_known_networks() {
    let db = GeoDb::bundled().unwrap();
    let info = db.info();
    assert_eq!(info.origin, "bundled");
    // Deutsche Telekom, NTT, China Telecom, HKT, Telstra, Vodacom, Etisalat.
    for (addr, cc) in [
        ("80.128.0.1", "DE"),
        ("8.8.8.8", "US"),
        ("202.96.128.86", "CN"),
        ("1.36.0.1", "HK"),
        ("203.2.218.214", "AU"),
        ("41.0.0.1", "ZA"),
        ("94.200.0.1", "AE"),
        ("2003::1", "DE"),
    ] {
        assert_eq!(country(db.lookup(ip(addr))), Some(cc), "{addr}");
    }
}

/// Found by `fuzz/fuzz_targets/geo_db.rs`: `maxminddb` 0.26 trusts the
/// file, so a metadata block whose search tree is larger than the file
/// (here: nothing but metadata) underflowed in its pointer arithmetic and
/// indexed past the buffer. Such files are refused before it reads them.
#[test]
fn corrupt_databases_are_refused_not_panics() {
    const METADATA_ONLY: &[u8] = include_bytes!("testdata/metadata-only.mmdb");
    let err = GeoDb::from_bytes(METADATA_ONLY.to_vec()).unwrap_err();
    assert!(err.to_string().contains("search tree"), "{err}");

    let good = build(Schema::GeoIp2, SAMPLE);
    // Every truncation, and a byte flipped at every position of the tree
    // and data: loaded or refused, and a loaded one answers every lookup.
    for cut in (0..good.len()).step_by(7) {
        let _ = GeoDb::from_bytes(good[..cut].to_vec());
    }
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        if let Ok(db) = GeoDb::from_bytes(bad) {
            for cc in ["US", "DE", "CN6"] {
                let _ = db.lookup_uncached(sample_ip(cc));
            }
        }
    }
    // A corrupt file on reload is refused and the current one keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    std::fs::write(&path, METADATA_ONLY).unwrap();
    assert!(matches!(GeoDb::open(&path), Err(GeoError::Unusable { .. })));
}

/// Found by `fuzz/fuzz_targets/geo_db.rs`: a record whose map holds a
/// pointer back to itself sent `maxminddb`'s decoder round the cycle until
/// the stack overflowed (an abort, not a panic). Cycles are refused at load.
#[test]
fn pointer_cycles_are_refused() {
    let bytes = include_bytes!("testdata/pointer-cycle.mmdb");
    let err = GeoDb::from_bytes(bytes.to_vec()).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

/// The bundled database skips the structural check at load (it is part of
/// the binary): this is where it is checked, once, for every build.
#[test]
fn the_bundled_database_passes_the_structural_check() {
    assert_eq!(crate::verify::verify(BUNDLED_DB), Ok(()));
    // and it answers as loaded
    let db = GeoDb::bundled().unwrap();
    assert_eq!(country(db.lookup_uncached(ip("81.2.69.160"))), Some("GB"));
}

/// A database path naming a device or a FIFO is refused at once, by kind:
/// a plain read filled memory from `/dev/zero` and waited for ever on a
/// FIFO (at start, or in the reload thread, for good).
#[test]
fn a_device_or_a_fifo_named_as_the_database_is_refused() {
    let zero = GeoDb::open("/dev/zero").err().map(|e| e.to_string());
    assert!(
        zero.as_deref()
            .unwrap_or_default()
            .contains("character device"),
        "{zero:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("geo.mmdb");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(GeoDb::open(&fifo).err().map(|e| e.to_string()));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the open of a FIFO returned");
        assert!(e.as_deref().unwrap_or_default().contains("FIFO"), "{e:?}");
    }
}
