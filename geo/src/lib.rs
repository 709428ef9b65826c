//! # edgesteer-geo
//!
//! Owns client IP -> country -> continent. It reads MaxMind-format
//! databases (files read into memory, or the bundled one embedded in the
//! binary), understands both the GeoIP2/GeoLite2/DB-IP schema
//! (`country.iso_code`, `continent.code`) and the flat `country_code`
//! schema, and falls back to the built-in ISO-3166 continent table when a
//! database has no continents.
//!
//! The database sits behind an `ArcSwap`: [`GeoDb::reload_if_changed`]
//! swaps in a new file atomically while lookups continue. Each worker thread
//! keeps a small direct-mapped cache of recent answers, invalidated by a
//! generation number on every swap, so repeat clients cost a few
//! nanoseconds and no lock is ever taken.
//!
//! Private, loopback, link-local and other non-routable addresses are
//! answered as [`LookupStatus::Private`] without touching the database; the
//! routing table sends them to its default region.
//!
//! The bundled database is the CC0 `geo-whois-asn-country` MMDB from the
//! ip-location-db project, built from NRO/RIR data (CC BY 4.0, attribution:
//! nro.net); see `geo/data/README.md`.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use edgesteer_config::{Continent, Country};
use maxminddb::Reader;

mod address_class;
mod decode;
mod networks;
#[cfg(feature = "test-util")]
pub mod testdb;
mod verify;

use address_class::canonical;
pub use address_class::is_non_routable;
use decode::{decode, Record};
pub use networks::GeoNetwork;

/// The bundled country database (see `geo/data/README.md` for its origin).
pub static BUNDLED_DB: &[u8] = include_bytes!("../data/geo-whois-asn-country.mmdb");

/// How a lookup ended; also the `result` label of `edgesteer_geo_lookups_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupStatus {
    Found,
    NotFound,
    Private,
    Error,
}

impl LookupStatus {
    pub const ALL: [LookupStatus; 4] = [
        LookupStatus::Found,
        LookupStatus::NotFound,
        LookupStatus::Private,
        LookupStatus::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Found => "found",
            LookupStatus::NotFound => "not_found",
            LookupStatus::Private => "private",
            LookupStatus::Error => "error",
        }
    }
}

/// The answer for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoResult {
    pub country: Option<Country>,
    /// From the database when it has one, else from the built-in table.
    pub continent: Option<Continent>,
    pub status: LookupStatus,
}

impl GeoResult {
    const fn empty(status: LookupStatus) -> Self {
        GeoResult {
            country: None,
            continent: None,
            status,
        }
    }
}

/// Anything that maps an address to a country; tests inject fixed answers.
pub trait GeoLookup: Send + Sync {
    fn lookup(&self, ip: IpAddr) -> GeoResult;

    /// The answer and the prefix length of the database network it came
    /// from (the DNS client-subnet scope). Without network data: the
    /// address's full length.
    fn lookup_net(&self, ip: IpAddr) -> (GeoResult, u8) {
        (self.lookup(ip), full_len(ip))
    }

    /// Every network with its answer, in address order (see
    /// [`GeoDb::for_each_network`]); `None` when the source cannot list them.
    fn networks(&self, _f: &mut dyn FnMut(GeoNetwork)) -> Option<Result<u64, String>> {
        None
    }

    /// Changes whenever the answers may have (a reload).
    fn generation(&self) -> u64 {
        0
    }
}

fn full_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot open geo database {path}: {source}")]
    Open {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    #[error("cannot read geo database {path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("geo database {origin} is not usable: {reason}")]
    Unusable { origin: String, reason: String },
}

/// One loaded database and where it came from.
struct Loaded {
    reader: AnyReader,
    generation: u64,
    origin: Origin,
}

/// Every database is held in memory, never memory-mapped: a file
/// rewritten in place (a `cp` over it) cannot change or truncate what is
/// serving, which with a mapping would be a SIGBUS.
type AnyReader = Reader<Cow<'static, [u8]>>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Bundled,
    Memory,
    File { path: PathBuf, stamp: FileStamp },
}

/// What identifies a version of a file on disk; a new file renamed into
/// place changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

/// A hot-swappable geo database.
pub struct GeoDb {
    current: ArcSwap<Loaded>,
}

/// Database metadata for logs, `/v1/explain` and `edgesteer validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoInfo {
    pub origin: String,
    pub database_type: String,
    pub build_epoch: u64,
    pub ip_version: u16,
    pub generation: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl GeoDb {
    /// The database embedded in the binary.
    pub fn bundled() -> Result<GeoDb, GeoError> {
        Self::from_loaded(load_memory(Cow::Borrowed(BUNDLED_DB), Origin::Bundled)?)
    }

    /// A database from bytes (tests and embedded uses).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoDb, GeoError> {
        Self::from_loaded(load_memory(Cow::Owned(bytes), Origin::Memory)?)
    }

    /// A database file, read into memory. Replacing it by renaming a new
    /// file over it (as `geoipupdate` does) is best; a file rewritten in
    /// place is also safe: the copy in memory keeps serving, and a torn
    /// read is refused (see [`GeoDb::reload_if_changed`]).
    pub fn open(path: impl AsRef<Path>) -> Result<GeoDb, GeoError> {
        Self::from_loaded(load_file(path.as_ref())?)
    }

    fn from_loaded(loaded: Loaded) -> Result<GeoDb, GeoError> {
        Ok(GeoDb {
            current: ArcSwap::from_pointee(loaded),
        })
    }

    /// Re-opens the file if it changed on disk since it was loaded, and
    /// swaps it in. Returns whether a new database is now live. A file that
    /// fails to load leaves the current database serving.
    pub fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let cur = self.current.load();
        let Origin::File { path, stamp } = &cur.origin else {
            return Ok(false);
        };
        let now = stamp_of(path)?;
        if now == *stamp {
            return Ok(false);
        }
        let next = load_file(path)?;
        tracing::info!(path = %path.display(), generation = next.generation, "geo database reloaded");
        self.current.store(Arc::new(next));
        Ok(true)
    }

    pub fn info(&self) -> GeoInfo {
        let cur = self.current.load();
        let meta = &cur.reader.metadata;
        GeoInfo {
            origin: match &cur.origin {
                Origin::Bundled => "bundled".into(),
                Origin::Memory => "memory".into(),
                Origin::File { path, .. } => path.display().to_string(),
            },
            database_type: meta.database_type.clone(),
            build_epoch: meta.build_epoch,
            ip_version: meta.ip_version,
            generation: cur.generation,
        }
    }

    /// Looks an address up, bypassing the per-thread cache.
    pub fn lookup_uncached(&self, ip: IpAddr) -> GeoResult {
        let ip = canonical(ip);
        if is_non_routable(ip) {
            return GeoResult::empty(LookupStatus::Private);
        }
        let cur = self.current.load();
        decode(&cur.reader, ip).0
    }
}

impl GeoLookup for GeoDb {
    fn lookup(&self, ip: IpAddr) -> GeoResult {
        self.lookup_net(ip).0
    }

    fn networks(&self, f: &mut dyn FnMut(GeoNetwork)) -> Option<Result<u64, String>> {
        Some(self.for_each_network(f))
    }

    fn generation(&self) -> u64 {
        GeoDb::generation(self)
    }

    fn lookup_net(&self, ip: IpAddr) -> (GeoResult, u8) {
        let ip = canonical(ip);
        if is_non_routable(ip) {
            return (GeoResult::empty(LookupStatus::Private), full_len(ip));
        }
        let cur = self.current.load();
        let key = cache_key(ip);
        let slot = slot_of(key);
        let hit = CACHE.with(|c| {
            let c = c.borrow();
            c.get(slot)
                .filter(|e| e.key == key && e.generation == cur.generation)
                .map(|e| (e.result, e.prefix))
        });
        if let Some(hit) = hit {
            return hit;
        }
        let (result, prefix) = decode(&cur.reader, ip);
        CACHE.with(|c| {
            if let Some(e) = c.borrow_mut().get_mut(slot) {
                *e = CacheEntry {
                    key,
                    generation: cur.generation,
                    result,
                    prefix,
                };
            }
        });
        (result, prefix)
    }
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("info", &self.info()).finish()
    }
}

/// Fixed answers by exact address, for tests of code that takes a [`GeoLookup`].
#[derive(Clone, Debug, Default)]
pub struct StaticGeo(pub Vec<(IpAddr, Country)>);

impl GeoLookup for StaticGeo {
    fn lookup(&self, ip: IpAddr) -> GeoResult {
        match self.0.iter().find(|(a, _)| *a == ip) {
            Some(&(_, c)) => GeoResult {
                country: Some(c),
                continent: c.builtin_continent(),
                status: LookupStatus::Found,
            },
            None => GeoResult::empty(LookupStatus::NotFound),
        }
    }
}

// ---- loading -------------------------------------------------------------

fn load_memory(bytes: Cow<'static, [u8]>, origin: Origin) -> Result<Loaded, GeoError> {
    let name = match origin {
        Origin::Bundled => "bundled",
        _ => "in-memory",
    };
    // The bundled database is part of the binary and checked by a unit
    // test (`the_bundled_database_passes_the_structural_check`); walking
    // it at every start would page in all 7.8 MB of it and allocate the
    // check's maps, for the idle proxy's memory to keep (issue 30).
    if !matches!(origin, Origin::Bundled) {
        verify::verify(&bytes).map_err(|reason| GeoError::Unusable {
            origin: name.into(),
            reason,
        })?;
    }
    let reader = Reader::from_source(bytes).map_err(|e| GeoError::Unusable {
        origin: name.into(),
        reason: e.to_string(),
    })?;
    check_usable(&reader, name)?;
    Ok(Loaded {
        reader,
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        origin,
    })
}

/// The largest database read (GeoIP2 City is about 70 MB).
pub const MAX_DB_BYTES: u64 = 1 << 30;

fn load_file(path: &Path) -> Result<Loaded, GeoError> {
    // The file is read into memory, checked, and served from that copy.
    // A file rewritten in place while it is read is seen by its stamp
    // changing under the read; that round is skipped and the next reload
    // tries again, so a torn copy never goes live.
    let stamp = stamp_of(path)?;
    // Only a regular file, opened non-blocking and read up to a cap: a FIFO
    // or `/dev/zero` named (or swapped in) must not hang or exhaust a
    // process, at start or at a reload.
    let bytes = edgesteer_config::pem::read_regular(path, MAX_DB_BYTES).map_err(|e| {
        GeoError::Unusable {
            origin: path.display().to_string(),
            reason: e.reason,
        }
    })?;
    if stamp_of(path)? != stamp || bytes.len() as u64 != stamp.len {
        return Err(GeoError::Unusable {
            origin: path.display().to_string(),
            reason: "the file changed while it was read (written in place?); retrying at the next reload".into(),
        });
    }
    // `maxminddb` trusts the file (see `verify`), so it is checked first.
    let origin = path.display().to_string();
    verify::verify(&bytes).map_err(|reason| GeoError::Unusable {
        origin: origin.clone(),
        reason,
    })?;
    let reader = Reader::from_source(Cow::Owned(bytes)).map_err(|source| GeoError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    check_usable(&reader, &origin)?;
    Ok(Loaded {
        reader,
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        origin: Origin::File {
            path: path.to_path_buf(),
            stamp,
        },
    })
}

/// Rejects databases we cannot answer from, before they go live.
fn check_usable<S: AsRef<[u8]>>(reader: &Reader<S>, origin: &str) -> Result<(), GeoError> {
    let probe: IpAddr = if reader.metadata.ip_version == 6 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888,
        ))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::new(8, 8, 8, 8))
    };
    match reader.lookup(probe).and_then(|r| r.decode::<Record<'_>>()) {
        Ok(_) => Ok(()),
        Err(e) => Err(GeoError::Unusable {
            origin: origin.into(),
            reason: format!("records do not decode as a country database: {e}"),
        }),
    }
}

fn stamp_of(path: &Path) -> Result<FileStamp, GeoError> {
    let meta = std::fs::metadata(path).map_err(|source| GeoError::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

// ---- per-thread cache ----------------------------------------------------

const CACHE_SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct CacheEntry {
    key: u128,
    generation: u64,
    result: GeoResult,
    prefix: u8,
}

thread_local! {
    static CACHE: RefCell<Box<[CacheEntry]>> = RefCell::new(
        vec![CacheEntry { key: 0, generation: 0, result: GeoResult::empty(LookupStatus::NotFound), prefix: 0 }; CACHE_SLOTS]
            .into_boxed_slice(),
    );
}

/// Every address its own key: IPv4 as its IPv4-mapped IPv6 form (the
/// address is canonical here, so no IPv6 key is one). Marking IPv4 with
/// the top bit once cleared that bit of IPv6 keys, so `a400::1` could be
/// answered with `2400::1`'s country.
fn cache_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn slot_of(key: u128) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64);
    let h = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // CACHE_SLOTS is a power of two; the high bits of the product mix best.
    (h >> (64 - CACHE_SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests;
