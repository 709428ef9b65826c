//! The compiled rate-limit policy: its key source, scope, tiers and reach,
//! and the per-request questions the proxy asks of it (does it apply, which
//! tier is this key).

use std::collections::HashMap;
use std::time::Duration;

use super::hash::sha256;
use super::path::normalize_path;
use crate::host::normalize_host;

/// Default cap on keys tracked per policy.
pub const DEFAULT_MAX_KEYS: u32 = 1_000_000;
/// Most policies one table may have (metrics cardinality, per-request work).
pub const MAX_POLICIES: usize = 32;
/// Highest rate: 10 million per second, where the GCRA interval (whole
/// nanoseconds) is still exact to 1%.
pub const MAX_RATE: u32 = 10_000_000;
/// Most tiers one policy may have.
pub const MAX_TIERS: usize = 32;
/// Default abuse block: one hour.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(3600);

/// Where a policy's key comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    ClientIp,
    /// Lower-case header name.
    Header(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Local,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFailure {
    /// Keep admitting under each proxy's local limit.
    Open,
    /// Answer 503 until the shared store is back.
    Closed,
}

/// One tier's limit, pre-converted to GCRA parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitTier {
    pub name: String,
    /// Requests per second.
    pub rate: u32,
    pub burst: u32,
    /// Nanoseconds between requests at the sustained rate (GCRA `T`),
    /// rounded up: see [`LimitTier::interval_ns`].
    pub interval_ns: u64,
    /// `interval_ns * burst` (GCRA tolerance).
    pub tolerance_ns: u64,
}

impl LimitTier {
    /// GCRA's `T` for `rate` per second, rounded up to the next
    /// nanosecond. Rounding down would admit a hair over the rate: at 36/s
    /// a truncated `T` let 91 requests through in a window that allows 90.
    pub fn interval_ns(rate: u32) -> u64 {
        1_000_000_000u64.div_ceil(u64::from(rate.max(1)))
    }

    pub fn new(name: &str, rate: u32, burst: u32) -> LimitTier {
        let interval_ns = LimitTier::interval_ns(rate);
        LimitTier {
            name: name.to_string(),
            rate,
            burst,
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst.max(1)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbuseSettings {
    /// Block when the rate exceeds `multiple` x the key's limit ...
    pub multiple: u32,
    /// ... in each of this many consecutive seconds ...
    pub for_secs: u32,
    /// ... for this long.
    pub block: Duration,
}

/// What must stay equal for a policy to keep its limiter state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyIdentity {
    pub name: String,
    pub key: LimitKey,
    pub scope: LimitScope,
    pub limits: Vec<(u32, u32)>,
}

#[derive(Clone, Debug)]
pub struct RateLimitPolicy {
    pub name: String,
    pub key: LimitKey,
    pub scope: LimitScope,
    pub on_store_error: StoreFailure,
    /// Add `RateLimit` headers to allowed responses.
    pub response_headers: bool,
    /// Lower-case hosts; empty = all.
    pub hosts: Vec<String>,
    /// Path prefixes; empty = all.
    pub path_prefixes: Vec<String>,
    pub tiers: Vec<LimitTier>,
    /// Index into `tiers` for unknown and missing keys.
    pub default_tier: usize,
    /// Known key -> index into `tiers`.
    pub keys: HashMap<String, usize>,
    /// Keys given as `sha256:<hex>` -> index into `tiers`: the table (and
    /// so the config service and every proxy) never holds those keys.
    pub hashed_keys: HashMap<[u8; 32], usize>,
    pub max_keys: u32,
    pub abuse: Option<AbuseSettings>,
}

impl RateLimitPolicy {
    /// Whether the policy covers a request for `host` and `path`. The host
    /// is compared without port or trailing dot (as host pins are), so
    /// `api.example.com:443` cannot dodge a policy for `api.example.com`.
    /// Paths are compared as sent (see docs/design.md).
    pub fn applies(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.hosts.is_empty()
            || host
                .map(normalize_host)
                .is_some_and(|h| self.hosts.iter().any(|x| x.eq_ignore_ascii_case(h)));
        if !host_ok {
            return false;
        }
        if self.path_prefixes.is_empty() {
            return true;
        }
        let matches = |path: &str| {
            self.path_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
        };
        // The common path is already normal; only `//`, `%`, `.` segments
        // or `\` cost a normalised copy.
        if path.contains("//") || path.contains('%') || path.contains("/.") || path.contains('\\') {
            matches(&normalize_path(path))
        } else {
            matches(path)
        }
    }

    /// The tier of a known key; `None` for unknown keys.
    pub fn tier_of(&self, key: &str) -> Option<usize> {
        if let Some(&t) = self.keys.get(key) {
            return Some(t);
        }
        if self.hashed_keys.is_empty() {
            return None;
        }
        self.hashed_keys.get(&sha256(key.as_bytes())).copied()
    }

    /// State identity across reloads: name, key source, scope and limits.
    /// Changing a tier's rate or burst starts the policy afresh (every key
    /// gets a full burst once), because a key's GCRA state is measured in
    /// the old interval; adding keys or moving a key between tiers does not.
    pub fn identity(&self) -> PolicyIdentity {
        PolicyIdentity {
            name: self.name.clone(),
            key: self.key.clone(),
            scope: self.scope,
            limits: self.tiers.iter().map(|t| (t.rate, t.burst)).collect(),
        }
    }
}
